"""One implementation on one problem, in a process of its own (started by run.py).

A fresh process per (implementation, problem) makes the first build a true cold
compile (no in-process caches, no warmed-up compiler) and lets run.py stop an
implementation whose compilation runs past its time limit.  Results go to stdout
as JSON lines prefixed with ``@@``, one per event, so run.py keeps whatever was
measured before a timeout.

    python benchmarks/worker.py '{"impl": "jax", "problem": "seed", "data": "/tmp/seed.npz", ...}'
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

import numpy as np

import timing
from impls import all_impls
from problems import PROBLEMS, VARIANTS

RTOL = 1e-7  # float64 everywhere; differences come only from summation order


def emit(**record):
    print("@@" + json.dumps(record), flush=True)


def as_arrays(result) -> list:
    """Any implementation's result as a list of float64 NumPy arrays."""
    items = list(result) if isinstance(result, (tuple, list)) else [result]
    arrays = []
    for item in items:
        if hasattr(item, "detach"):  # a torch tensor
            item = item.detach().numpy()
        elif hasattr(item, "full") and not isinstance(item, np.ndarray):  # a CasADi DM
            item = item.full()
        arrays.append(np.asarray(item, dtype=np.float64))
    return arrays


def check(result, expected: list) -> str | None:
    """None when ``result`` matches the reference evaluator's values, else what differs."""
    got = as_arrays(result)
    if len(got) != len(expected):
        return f"{len(got)} outputs, the reference has {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected)):
        if g.size != e.size:
            return f"output {i} has shape {g.shape}, the reference {e.shape}"
        g = g.reshape(e.shape)
        scale = float(np.max(np.abs(e))) if e.size else 0.0
        error = float(np.max(np.abs(g - e))) if e.size else 0.0
        if not error <= RTOL * max(scale, 1e-300):
            return f"output {i} differs from the reference: max abs error {error:.3g} (largest |value| {scale:.3g})"
    return None


def main(spec: dict):
    problem = PROBLEMS[spec["problem"]]
    impl = all_impls(spec.get("symdiff_backend", "numba"))[spec["impl"]]
    settings = timing.QUICK if spec.get("quick") else timing.FULL
    stored = np.load(spec["data"])
    inputs = {k[3:]: stored[k] for k in stored.files if k.startswith("in_")}

    start = time.perf_counter()
    impl.setup()
    emit(event="setup", seconds=time.perf_counter() - start)

    compile_total = 0.0
    for variant in spec.get("variants", VARIANTS):
        if not impl.applies(problem, variant):
            continue
        if compile_total > spec.get("compile_budget_s", float("inf")):
            emit(event="skipped", variant=variant,
                 reason=f"earlier variants took {compile_total:.0f} s to compile, over the budget")
            continue
        expected = [stored[f"ref_{variant}_{i}"] for i in range(int(stored[f"nref_{variant}"]))]
        args = impl.prepare(problem, variant, inputs)
        emit(event="begin", variant=variant, wall=time.time())
        try:
            start = time.perf_counter()
            fn = impl.build(problem, variant)
            result = fn(*args)
            seconds = time.perf_counter() - start
        except Exception as exc:  # a peer failing is a finding to report, not a crash
            emit(event="error", variant=variant, error=f"{type(exc).__name__}: {exc}"[:300],
                 traceback=traceback.format_exc()[-2000:])
            continue
        compile_total += seconds
        source = getattr(fn, "source", None)
        if impl.name == "symdiff" and isinstance(source, str):
            # issue 14: no object-mode block may be left in a kernel for built-in ops
            emit(event="source", variant=variant, objmode="objmode" in source)
        mismatch = check(result, expected)
        emit(event="compiled", variant=variant, seconds=seconds if impl.compiles else None, mismatch=mismatch)
        if mismatch or spec.get("mode") == "warm":
            continue
        # the 1-minute load average next to each figure: this machine is shared
        emit(event="timed", variant=variant, load1=os.getloadavg()[0], **timing.measure(fn, args, settings))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
