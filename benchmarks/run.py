"""symdiff's benchmark suite: compile times and call times against hand-written code
and peer libraries, written to docs/performance.md.

    python benchmarks/run.py                 # everything (about 10 minutes on 2 cores)
    python benchmarks/run.py --quick         # smoke run: small problems, few repeats
    python benchmarks/run.py --only mlp --no-peers
    python benchmarks/run.py --background-load 2 --compile-scaling /tmp/scaling.json   # issue 14's whole set

Every problem with arrays has a twin "<name>_none" whose inputs are declared with None sizes
(see NONE_DIMS in problems.py); the report shows both side by side.  ``--background-load N``
then measures the MLP's value+grad quiet and with N busy processes, alternating, and reports
each implementation's slowdown factor.  Compile time against graph size is measured by
benchmarks/compile_scaling.py, whose JSON ``--compile-scaling`` renders into the same report.

Each (implementation, problem) pair runs in a fresh process (benchmarks/worker.py):
its first build is a cold compile, with empty caches (SYMDIFF_CACHE_DIR, NUMBA_CACHE_DIR
and PyTensor's compiledir point into a new temporary directory).  symdiff and PyTensor
are then run once more in another new process with those caches filled: the warm
compile.  Every result is checked against symdiff's NumPy reference evaluator before
it is timed.  See "How the benchmarks measure" in docs/architecture.md for the method and caveats.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from impls import PEERS, all_impls  # noqa: E402
from problems import PROBLEMS, make_inputs, reference  # noqa: E402
import report  # noqa: E402

ROOT = HERE.parent
VARIANT_ORDER = ("value_grad", "value", "hvp")  # value+grad first: its compile is the cold one
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
WARM_CAPABLE = {"symdiff": VARIANT_ORDER, "pytensor": ("value_grad",)}  # implementations with a disk cache


def limits(impl: str, quick: bool) -> tuple:
    """(seconds before a worker is stopped, compile seconds after which no further variant starts)."""
    if quick:
        return 45.0, 20.0
    if impl == "pytensor":
        return 150.0, 50.0
    return 120.0, 60.0


def run_worker(spec: dict, env: dict, timeout: float) -> dict:
    """Run one worker; its events grouped by variant, with timeouts turned into "> N s"."""
    command = [sys.executable, str(HERE / "worker.py"), json.dumps(spec)]
    timed_out = False
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        stdout, stderr, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        code, timed_out = None, True
    events = [json.loads(line[2:]) for line in stdout.splitlines() if line.startswith("@@")]
    outcome = {"compile": {}, "call": {}, "notes": [], "setup_s": None}
    pending = None
    for event in events:
        kind, variant = event["event"], event.get("variant")
        if kind == "setup":
            outcome["setup_s"] = event["seconds"]
        elif kind == "begin":
            pending = event
        elif kind == "compiled":
            pending = None
            outcome["compile"][variant] = event["seconds"]
            if event["mismatch"]:
                outcome["notes"].append(f"{variant}: wrong result, not timed: {event['mismatch']}")
                outcome["call"][variant] = "wrong"
        elif kind == "source":
            outcome.setdefault("objmode", {})[variant] = event["objmode"]
        elif kind == "timed":
            outcome["call"][variant] = event
        elif kind == "error":
            pending = None
            outcome["notes"].append(f"{variant}: failed: {event['error']}")
            outcome["call"][variant] = "failed"
        elif kind == "skipped":
            outcome["notes"].append(f"{variant}: not compiled: {event['reason']}")
    if timed_out:
        if pending is not None:
            waited = time.time() - pending["wall"]
            outcome["compile"][pending["variant"]] = f"> {waited:.0f}"
            outcome["notes"].append(f"{pending['variant']}: stopped after {waited:.0f} s of compiling")
        else:
            outcome["notes"].append(f"stopped after {timeout:.0f} s")
    elif code != 0:
        last = stderr.strip().splitlines()[-1:] or ["no output"]
        outcome["notes"].append(f"worker exited with code {code}: {last[0][:300]}")
    return outcome


def prepare_data(problems: list, workdir: Path) -> dict:
    """Inputs and reference results per problem, saved for the workers."""
    paths = {}
    for problem in problems:
        inputs = make_inputs(problem)
        expected = reference(problem, inputs)
        arrays = {f"in_{k}": v for k, v in inputs.items()}
        for variant, values in expected.items():
            arrays[f"nref_{variant}"] = np.asarray(len(values))
            arrays.update({f"ref_{variant}_{i}": v for i, v in enumerate(values)})
        paths[problem.name] = workdir / f"{problem.name}.npz"
        np.savez(paths[problem.name], **arrays)
    return paths


def describe(outcome: dict) -> str:
    parts = []
    for variant in VARIANT_ORDER:
        seconds = outcome["compile"].get(variant)
        call = outcome["call"].get(variant)
        if seconds is None and call is None:
            continue
        text = variant
        if seconds is not None:
            text += f" compile {seconds if isinstance(seconds, str) else f'{seconds:.2f}'} s"
        if isinstance(call, dict):
            text += f" call {report.fmt_us(call['median_s'])} us"
        elif call:
            text += f" {call}"
        parts.append(text)
    return "; ".join(parts) or "nothing measured"


# A busy process: a pure Python spin loop that ends by itself after argv[1] seconds, so a
# benchmark killed with SIGKILL (no cleanup possible) still leaves no load behind for long.
SPIN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


class BackgroundLoad:
    """``with BackgroundLoad(n, limit_s):`` N spinning processes for the body of the block, stopped
    at its end, on an exception (Ctrl-C included) and by their own time limit in any case."""

    def __init__(self, n: int, limit_s: float):
        self.n, self.limit_s, self.procs = n, limit_s, []

    def __enter__(self):
        try:
            for _ in range(self.n):
                self.procs.append(subprocess.Popen([sys.executable, "-c", SPIN, str(self.limit_s)],
                                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        except BaseException:
            self.stop()
            raise
        time.sleep(0.3)  # let the scheduler see them busy before measuring
        return self

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []

    def __exit__(self, *exc):
        self.stop()
        return False


def measure_under_load(n: int, rounds: int, chosen: list, impls: dict, data: dict, workdir: Path, args) -> dict:
    """Quiet and loaded call times of the MLP's value+grad (static and None dims), alternating."""
    problems = [p for p in ("mlp", "mlp_none") if p in data]
    samples: dict = {p: {} for p in problems}
    notes = []
    load_before = os.getloadavg()
    for round_ in range(rounds):
        for problem_name in problems:
            problem = PROBLEMS[problem_name]
            for name in chosen:
                if not impls[name].applies(problem, "value_grad"):
                    continue
                timeout, _ = limits(name, args.quick)
                env = worker_env(workdir / f"caches-{name}-{problem_name}", args)
                spec = {"impl": name, "problem": problem_name, "data": str(data[problem_name]), "quick": args.quick,
                        "variants": ["value_grad"], "symdiff_backend": args.symdiff_backend, "mode": "cold",
                        "compile_budget_s": 1e9}
                quiet = run_worker(spec, env, timeout)
                with BackgroundLoad(n, timeout + 30):
                    loaded = run_worker(spec, env, timeout)
                got = [o["call"].get("value_grad") for o in (quiet, loaded)]
                if not all(isinstance(g, dict) for g in got):
                    notes.append(f"{problem_name}, {name}, round {round_ + 1}: not measured "
                                 f"({'; '.join(quiet['notes'] + loaded['notes']) or 'no result'})")
                    continue
                samples[problem_name].setdefault(name, []).append(
                    (got[0]["median_s"], got[1]["median_s"], got[0].get("cpu_median_s"), got[1].get("cpu_median_s")))
                print(f"{name:>9} {problem_name:<15} round {round_ + 1}: quiet {report.fmt_us(got[0]['median_s'])} us, "
                      f"{n} busy processes {report.fmt_us(got[1]['median_s'])} us "
                      f"({got[1]['median_s'] / got[0]['median_s']:.2f}x)", flush=True)
    factors = {}
    for problem_name, by_impl in samples.items():
        factors[problem_name] = {}
        for name, pairs in by_impl.items():
            quiet_s = statistics.median(p[0] for p in pairs)
            loaded_s = statistics.median(p[1] for p in pairs)
            factors[problem_name][name] = {"quiet_s": quiet_s, "loaded_s": loaded_s, "factor": loaded_s / quiet_s,
                                           "rounds": [p[1] / p[0] for p in pairs]}
            if all(p[2] and p[3] for p in pairs):
                quiet_cpu, loaded_cpu = statistics.median(p[2] for p in pairs), statistics.median(p[3] for p in pairs)
                factors[problem_name][name].update(quiet_cpu_s=quiet_cpu, loaded_cpu_s=loaded_cpu,
                                                   cpu_factor=loaded_cpu / quiet_cpu)
    return {"n": n, "rounds": rounds, "problems": problems, "factors": factors, "notes": notes,
            "load_before": load_before, "load_after": os.getloadavg(),
            "labels": {name: impls[name].label for name in impls}}


def worker_env(caches: Path, args) -> dict:
    env = dict(os.environ, SYMDIFF_CACHE_DIR=str(caches / "symdiff"), NUMBA_CACHE_DIR=str(caches / "numba"),
               PYTENSOR_FLAGS=f"compiledir={caches / 'pytensor'}", JAX_PLATFORMS="cpu")
    if args.threads:
        env.update({var: str(args.threads) for var in THREAD_VARIABLES})
    # an installed package has bytecode (pip compiles it); without it every new process
    # compiles the modules it imports from source again (0.07 s of symdiff's warm start)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _terminate(signum, frame):
    # SIGTERM as Ctrl-C: unwind through the finally blocks that stop busy processes and remove the workdir
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, small problems only (a smoke test)")
    parser.add_argument("--only", action="append", choices=sorted(PROBLEMS), metavar="PROBLEM",
                        help=f"run only this problem (repeatable): {', '.join(PROBLEMS)}")
    parser.add_argument("--no-peers", action="store_true", help="skip JAX, PyTensor, PyTorch and CasADi")
    parser.add_argument("--symdiff-backend", default="numba", choices=("numba", "numpy"),
                        help="the sd.function backend to measure (default numba)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="cap BLAS/OpenMP threads in the workers (OPENBLAS/OMP/MKL_NUM_THREADS); default: "
                             "each library's own default. 1 gives steadier figures on a loaded machine")
    parser.add_argument("--output", default=str(ROOT / "docs" / "performance.md"), help="the report to write")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--render", metavar="JSON", help="measure nothing: rewrite the report from a --json file")
    parser.add_argument("--background-load", type=int, default=0, metavar="N",
                        help="after the problems, measure the MLP's value+grad quiet and with N busy processes "
                             "(issue 14), alternating, and report each implementation's slowdown factor")
    parser.add_argument("--load-rounds", type=int, default=3, metavar="R",
                        help="quiet/loaded pairs per implementation for --background-load (default 3)")
    parser.add_argument("--remarks", metavar="MARKDOWN",
                        help="a file of remarks on this run (conditions, findings) placed after the report's header")
    parser.add_argument("--compile-scaling", metavar="JSON",
                        help="include the results of benchmarks/compile_scaling.py --json JSON in the report")
    args = parser.parse_args(argv)
    scaling = json.loads(Path(args.compile_scaling).read_text()) if args.compile_scaling else None
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        problems = [PROBLEMS[name] for name in saved["results"]]
        if args.remarks:
            saved["run"]["remarks"] = Path(args.remarks).read_text()
        Path(args.output).write_text(report.render(problems, saved["results"], saved["run"], saved.get("background"),
                                                   scaling or saved.get("scaling")))
        print(f"wrote {args.output} from {args.render}")
        return
    signal.signal(signal.SIGTERM, _terminate)

    started = time.time()
    load_before = os.getloadavg()
    problems = [PROBLEMS[n] for n in (args.only or PROBLEMS)]
    if args.quick and not args.only:
        problems = [p for p in problems if p.quick]
    if args.background_load and not any(p.name == "mlp" for p in problems):
        problems.append(PROBLEMS["mlp"])
    impls = all_impls(args.symdiff_backend)
    chosen = [name for name in impls if not (args.no_peers and name in PEERS)]
    skipped = {name: "--no-peers" for name in impls if name not in chosen}
    for name in list(chosen):
        reason = impls[name].available()
        if reason:
            skipped[name] = reason
            chosen.remove(name)
            print(f"skipping {impls[name].label}: {reason}", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="symdiff-bench-"))
    results: dict = {p.name: {} for p in problems}
    background = None
    try:
        print(f"computing inputs and reference results for {', '.join(p.name for p in problems)}", flush=True)
        data = prepare_data(problems, workdir)
        for name in chosen:
            timeout, budget = limits(name, args.quick)
            for problem in problems:
                variants = [v for v in VARIANT_ORDER if impls[name].applies(problem, v)]
                if not variants:
                    continue
                env = worker_env(workdir / f"caches-{name}-{problem.name}", args)
                spec = {"impl": name, "problem": problem.name, "data": str(data[problem.name]), "quick": args.quick,
                        "variants": variants, "symdiff_backend": args.symdiff_backend, "mode": "cold",
                        "compile_budget_s": budget}
                outcome = run_worker(spec, env, timeout)
                print(f"{name:>9} {problem.name:<15} {describe(outcome)}", flush=True)
                warm_variants = [v for v in WARM_CAPABLE.get(name, ()) if isinstance(outcome["compile"].get(v), float)]
                if warm_variants:
                    warm = run_worker(dict(spec, mode="warm", variants=warm_variants), env, timeout)
                    outcome["warm"] = warm["compile"]
                    outcome["notes"] += [f"warm run: {n}" for n in warm["notes"]]
                    print(f"{'':>9} {'(warm)':<15} {describe(warm)}", flush=True)
                for note in outcome["notes"]:
                    print(f"{'':>9} note: {note}", flush=True)
                results[problem.name][name] = outcome
        if args.background_load:
            print(f"measuring the MLP with {args.background_load} busy processes, {args.load_rounds} rounds "
                  f"(load average {os.getloadavg()[0]:.2f})", flush=True)
            background = measure_under_load(args.background_load, args.load_rounds, chosen, impls, data, workdir, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    run_info = {
        "command": "python benchmarks/run.py" + "".join(" " + a for a in (argv if argv is not None else sys.argv[1:])),
        "quick": args.quick, "started": started, "seconds": time.time() - started,
        "load_before": load_before, "load_after": os.getloadavg(),
        "labels": {name: impl.label for name, impl in impls.items()}, "skipped": skipped,
        "symdiff_backend": args.symdiff_backend, "threads": args.threads,
        "remarks": Path(args.remarks).read_text() if args.remarks else "",
    }
    text = report.render(problems, results, run_info, background, scaling)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"run": run_info, "results": results, "background": background,
                                               "scaling": scaling}, indent=1, default=str))
    print(f"wrote {args.output} in {run_info['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
