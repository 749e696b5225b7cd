"""Quick measurements of the Numba code generator against the issue's targets.

    python benchmarks/codegen_probe.py            # everything (about a minute)
    python benchmarks/codegen_probe.py seed chain # some problems

Each problem is compiled in a fresh process twice, with an empty cache dir (cold)
and again (warm: the cache filled by the first), timing ``sd.function`` from build
to first result, in wall-clock and CPU seconds; the call timings are medians over
repeated batches, next to a hand-written baseline timed in the same process.  The
machine is shared: compare figures within one run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import timeit

import numpy as np

PROBLEMS = ("seed", "rosen1e3", "rosen1e6", "mlp", "chain")


def build(problem: str):
    """(inputs, outputs, argument values, hand-written baseline or None)."""
    import symdiff as sd

    rng = np.random.default_rng(0)
    if problem == "seed":
        a, b = sd.scalars("a b")
        e = (a + b) * (b + 1)
        return [a, b], [e, *sd.grad(e, [a, b])], (2.0, 1.0), None
    if problem.startswith("rosen"):
        n = 1000 if problem == "rosen1e3" else 1_000_000
        x = sd.vector("x")
        r = sd.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
        return [x], [r, sd.grad(r, x)], (rng.normal(size=n),), _hand_rosenbrock()
    if problem == "mlp":
        X, Y = sd.matrix("X", (None, 64)), sd.matrix("Y", (None, 10))
        W1, b1 = sd.matrix("W1", (64, 128)), sd.vector("b1", 128)
        W2, b2 = sd.matrix("W2", (128, 10)), sd.vector("b2", 10)
        h = sd.tanh(X @ W1 + b1)
        loss = -sd.mean(sd.sum(Y * sd.log_softmax(h @ W2 + b2, axis=1), axis=1))
        values = (rng.normal(size=(256, 64)), np.eye(10)[rng.integers(0, 10, 256)], rng.normal(size=(64, 128)) * 0.1,
                  np.zeros(128), rng.normal(size=(128, 10)) * 0.1, np.zeros(10))
        inputs = [X, Y, W1, b1, W2, b2]
        return inputs, [loss, *sd.grad(loss, inputs[2:])], values, _numpy_mlp
    if problem == "chain":
        x = sd.scalar("x")
        y = x
        for _ in range(300):
            y = sd.sin(y) * y + sd.cos(y)
        return [x], [y, sd.grad(y, x)], (0.3,), None
    raise ValueError(problem)


def _hand_rosenbrock():
    from numba import njit

    @njit(cache=True)
    def rosenbrock_value_and_gradient(x):
        n = x.shape[0]
        g = np.zeros(n)
        f = 0.0
        for i in range(n - 1):
            d = x[i + 1] - x[i] * x[i]
            c = 1.0 - x[i]
            f += 100.0 * d * d + c * c
            g[i] += -400.0 * d * x[i] - 2.0 * c
            g[i + 1] += 200.0 * d
        return f, g

    return rosenbrock_value_and_gradient


def _numpy_mlp(X, Y, W1, b1, W2, b2):
    h = np.tanh(X @ W1 + b1)
    logits = h @ W2 + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    n = X.shape[0]
    loss = -(Y * (shifted - np.log(s))).sum() / n
    g = (e / s - Y) / n
    dz = (g @ W2.T) * (1 - h * h)
    return loss, X.T @ dz, dz.sum(0), h.T @ g, g.sum(0)


def median_call_us(fn, args, seconds=0.5) -> float:
    fn(*args)
    number = max(1, int(0.01 / max(timeit.timeit(lambda: fn(*args), number=1), 1e-7)))
    batches = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(batches) < 5:
        batches.append(timeit.timeit(lambda: fn(*args), number=number) / number)
    return float(np.median(batches) * 1e6)


def child(problem: str):
    """Run in a fresh process: build, first call, then call timings."""
    wall = time.perf_counter()
    import symdiff as sd

    inputs, outputs, values, baseline = build(problem)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    f = sd.function(inputs, outputs)
    f(*values)
    report = {
        "problem": problem, "cache": f.cache_status,
        "import_and_graph_s": round(start_wall - wall, 3),
        "compile_wall_s": round(time.perf_counter() - start_wall, 3),
        "compile_cpu_s": round(time.process_time() - start_cpu, 3),
        "build_total_wall_s": round(time.perf_counter() - wall, 3),
        "call_us": round(median_call_us(f, values), 2),
        "kernel_only_us": round(median_call_us(f.kernel, values + tuple(f._hidden)), 2),
    }
    if baseline is not None:
        report["baseline_us"] = round(median_call_us(baseline, values), 2)
    print(json.dumps(report))


def main(problems):
    for problem in problems:
        cache = tempfile.mkdtemp(prefix="symdiff-probe-")
        env = dict(os.environ, SYMDIFF_CACHE_DIR=cache)
        for label in ("cold", "warm"):
            result = subprocess.run([sys.executable, __file__, "--child", problem], env=env, capture_output=True,
                                    text=True)
            if result.returncode:
                print(problem, label, "failed:", result.stderr[-2000:])
                break
            print(label, result.stdout.strip())


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main(sys.argv[1:] or PROBLEMS)
