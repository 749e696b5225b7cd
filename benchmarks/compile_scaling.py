"""Compile time of big graphs against their size (issue 14), each graph in a new process
with an empty kernel cache, so no cache hides the compile.

    python benchmarks/compile_scaling.py --json /tmp/scaling.json            # all sizes, 300 s each
    python benchmarks/compile_scaling.py --quick --json /tmp/scaling.json    # small sizes (a smoke run)
    python benchmarks/run.py ... --compile-scaling /tmp/scaling.json         # into docs/performance.md

Graphs (value and gradient in one ``sd.function``):

- ``chain_N``: x <- sin(x)*x + cos(x) on a vector of 4, N forward nodes (4 per layer), output
  sum(x) and its gradient with respect to the first x;
- ``stack_scalars_300``: 300 scalar inputs joined by ``sd.stack``, sum(sin(v) * v) and its 300 partials;
- ``stack_vectors_300``: 300 vector inputs of run-time size joined by ``sd.stack``, the same cost;
- warm start: the MLP value+grad (static sizes and sizes None) built in one process, then in a
  second new process with the first one's cache: build to first result (the loaded kernel).

The figures per row: graph build plus ``sd.grad`` (Python), ``sd.function`` to the first result
(code generation, Numba), total, total per forward node, and the process's peak resident memory
(VmHWM, read from /proc while it runs, so a row stopped at the time limit still has one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FULL_CHAINS = (4, 10_000, 40_000, 200_000)
QUICK_CHAINS = (4, 1_000)


def _chain(forward_nodes: int):
    import numpy as np

    import symdiff as sd

    x0 = sd.tensor("x", (4,))
    x = x0
    for _ in range(max(1, forward_nodes // 4)):
        x = sd.sin(x) * x + sd.cos(x)
    f = sd.sum(x)
    return [x0], [f, *sd.grad(f, [x0])], [np.linspace(0.1, 0.9, 4)], f


def _stack(count: int, vectors: bool):
    import numpy as np

    import symdiff as sd

    inputs = [sd.tensor(f"s{i}", (None,) if vectors else ()) for i in range(count)]
    v = sd.stack(inputs)
    f = sd.sum(sd.sin(v) * v)
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(5) if vectors else float(rng.standard_normal()) for _ in range(count)]
    return inputs, [f, *sd.grad(f, inputs)], values, f


def _mlp(dynamic: bool):
    sys.path.insert(0, str(HERE))
    from problems import PROBLEMS, make_inputs, symdiff_graph

    problem = PROBLEMS["mlp_none" if dynamic else "mlp"]
    symbols, outputs = symdiff_graph(problem, "value_grad")
    inputs = make_inputs(problem)
    return symbols, outputs, [inputs[s.name] for s in symbols], outputs[0]


def child(name: str):
    """Runs in the measured process: prints one JSON line."""
    import numba  # noqa: F401  (importing is not compiling)

    import symdiff as sd

    start, cpu_start = time.perf_counter(), time.process_time()
    if name.startswith("chain_"):
        symbols, outputs, values, f = _chain(int(name.split("_")[1]))
    elif name.startswith("stack_"):
        symbols, outputs, values, f = _stack(int(name.split("_")[2]), vectors=name.startswith("stack_vectors"))
    elif name.startswith("mlp"):
        symbols, outputs, values, f = _mlp(dynamic=name == "mlp_none")
    else:
        raise KeyError(name)
    graph_s = time.perf_counter() - start
    forward, total = sd.node_count([f]), sd.node_count(outputs)
    start = time.perf_counter()
    fn = sd.function(symbols, outputs)
    fn(*values)
    compile_s = time.perf_counter() - start
    # CPU seconds as well as wall seconds: on a shared machine the wall clock includes waiting for a core
    print("@@" + json.dumps({"graph_s": graph_s, "compile_s": compile_s, "seconds": graph_s + compile_s,
                             "cpu_s": time.process_time() - cpu_start,
                             "forward_nodes": forward, "total_nodes": total}), flush=True)


def _peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_child(name: str, cache: Path, timeout: float) -> dict:
    """One measurement in a new process; its peak memory polled from /proc while it runs."""
    env = dict(os.environ, SYMDIFF_CACHE_DIR=str(cache / "symdiff"), NUMBA_CACHE_DIR=str(cache / "numba"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: with bytecode (see run.py's worker_env)
    wall = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", name], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    peak, status = 0.0, None
    try:
        while proc.poll() is None:
            peak = max(peak, _peak_rss_mb(proc.pid) or 0.0)
            if time.perf_counter() - wall > timeout:
                status = f"> {timeout:.0f} s (stopped)"
                break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    wall = time.perf_counter() - wall
    records = [json.loads(line[2:]) for line in stdout.splitlines() if line.startswith("@@")]
    result = {"name": name, "peak_rss_mb": peak, "wall_s": wall}
    if records:
        result.update(records[-1])
    else:
        result["seconds"] = None
        result["status"] = status or f"failed: {(stderr.strip().splitlines() or ['no output'])[-1][:200]}"
    return result


TITLES = {"stack_scalars_300": "300 scalar inputs, sd.stack", "stack_vectors_300": "300 vector inputs (size None), sd.stack"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small graphs only (a smoke run)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement (default 300)")
    parser.add_argument("--only", action="append", metavar="NAME", help="chain_N, stack_scalars_N, stack_vectors_N, warm")
    parser.add_argument("--json", help="write the results here (for run.py --compile-scaling)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    stacks = 30 if args.quick else 300
    names = [f"chain_{n}" for n in (QUICK_CHAINS if args.quick else FULL_CHAINS)]
    names += [f"stack_scalars_{stacks}", f"stack_vectors_{stacks}", "warm"]
    if args.only:
        names = [n for n in args.only]
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="symdiff-scaling-"))
    results, warm = [], []
    try:
        for name in names:
            if name == "warm":
                for mlp, title in (("mlp", "MLP value+grad, static sizes"), ("mlp_none", "MLP value+grad, sizes None")):
                    cold = run_child(mlp, workdir / name / mlp, args.timeout)
                    again = run_child(mlp, workdir / name / mlp, args.timeout)
                    if cold.get("seconds") is None or again.get("seconds") is None:
                        print(f"{title}: {cold.get('status')} / {again.get('status')}", flush=True)
                        continue
                    warm.append({"title": title, "cold_s": cold["graph_s"] + cold["compile_s"],
                                 "warm_s": again["graph_s"] + again["compile_s"], "warm_wall_s": again["wall_s"]})
                    print(f"{title}: cold {warm[-1]['cold_s']:.3f} s, warm {warm[-1]['warm_s']:.3f} s "
                          f"(warm process {again['wall_s']:.2f} s)", flush=True)
                continue
            result = run_child(name, workdir / name, args.timeout)
            if name.startswith("chain_"):
                result["title"] = f"chain x <- sin(x)*x + cos(x), vector of 4, {int(name.split('_')[1]):,} forward nodes"
                result.setdefault("forward_nodes", int(name.split("_")[1]))
            else:
                result["title"] = TITLES.get(name, name)
                result.setdefault("forward_nodes", int(name.split("_")[2]))  # at least one per input
            results.append(result)
            if result.get("seconds") is None:
                print(f"{name}: {result['status']}, peak {result['peak_rss_mb']:.0f} MB", flush=True)
            else:
                print(f"{name}: {result['forward_nodes']} forward / {result['total_nodes']} nodes: graph "
                      f"{result['graph_s']:.2f} s + sd.function {result['compile_s']:.2f} s = {result['seconds']:.2f} s "
                      f"({result['seconds'] / result['forward_nodes'] * 1e6:.0f} us per forward node), "
                      f"peak {result['peak_rss_mb']:.0f} MB", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = {"command": "python benchmarks/compile_scaling.py" + "".join(" " + a for a in (argv or sys.argv[1:])),
           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "timeout_s": args.timeout,
           "load_before": load_before, "load_after": os.getloadavg(), "results": results, "warm": warm}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
