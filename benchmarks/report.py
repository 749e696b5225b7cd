"""Renders the benchmark results as docs/performance.md: machine, versions, the
issue's targets next to the measured figures, and per-problem tables."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform

ORDER = ("value", "value_grad", "hvp")
VERSIONED = ("symdiff", "numpy", "numba", "llvmlite", "sympy", "scipy", "jax", "jaxlib", "pytensor", "torch", "casadi")


def fmt_us(seconds: float) -> str:
    us = seconds * 1e6
    if us < 10:
        return f"{us:.2f}"
    if us < 1000:
        return f"{us:.1f}"
    return f"{us:,.0f}"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


def fmt_s(seconds) -> str:
    if seconds is None:
        return "-"
    if isinstance(seconds, str):  # "> N": stopped at the time limit
        return seconds + " s"
    return f"{seconds:.3f} s" if seconds < 1 else f"{seconds:.2f} s"


def machine() -> list:
    model, physical = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            block = {}
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name":
                    model = value
                elif key in ("physical id", "core id"):
                    block[key] = value
                if not line.strip():
                    physical.add((block.get("physical id"), block.get("core id")))
                    block = {}
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            memory = f"{kib / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return [
        f"- CPU: {model}; {os.cpu_count()} logical cores ({len(physical) or '?'} physical cores seen in /proc/cpuinfo)",
        f"- memory: {memory}; OS: {platform.platform()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
    ]


def versions() -> str:
    found = []
    for name in VERSIONED:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def _call(results, problem, impl, variant):
    """Median seconds per call, or None."""
    call = results.get(problem, {}).get(impl, {}).get("call", {}).get(variant)
    return call["median_s"] if isinstance(call, dict) else None


def _compile(results, problem, impl, variant, warm=False):
    return results.get(problem, {}).get(impl, {}).get("warm" if warm else "compile", {}).get(variant)


def targets(results) -> list:
    """(target, measured, verdict) rows; the issue's targets for the Numba backend."""
    rows = []

    def verdict(ok):
        return "not measured" if ok is None else ("met" if ok else "**not met**")

    def call_target(text, problem, variant, limit_us):
        t = _call(results, problem, "symdiff", variant)
        ok = None if t is None else t * 1e6 <= limit_us
        rows.append((text, "-" if t is None else f"{fmt_us(t)} us", verdict(ok)))

    def ratio_target(text, problem, variant, other, limit):
        mine, theirs = _call(results, problem, "symdiff", variant), _call(results, problem, other, variant)
        ok = None if mine is None or theirs is None else mine <= limit * theirs
        shown = "-" if ok is None else f"{fmt_us(mine)} us vs {fmt_us(theirs)} us = {mine / theirs:.2f}x"
        rows.append((text, shown, verdict(ok)))

    def compile_target(text, problem, limit_s, warm=False):
        s = _compile(results, problem, "symdiff", "value_grad", warm)
        ok = None if s is None else (s <= limit_s if isinstance(s, float) else False)
        rows.append((text, fmt_s(s), verdict(ok)))

    call_target("seed value+grad call <= 0.5 us", "seed", "value_grad", 0.5)
    call_target("Rosenbrock 1e3 value+grad call <= 3 us", "rosenbrock_1e3", "value_grad", 3.0)
    ratio_target("Rosenbrock 1e6 value+grad <= 0.8x JAX", "rosenbrock_1e6", "value_grad", "jax", 0.8)
    ratio_target("Rosenbrock 1e6 value+grad <= 1.3x hand-written Numba", "rosenbrock_1e6", "value_grad", "numba", 1.3)
    ratio_target("MLP value+grad <= hand-written NumPy", "mlp", "value_grad", "numpy", 1.0)
    compile_target("chain-300 value+derivative cold compile <= 1 s", "chain", 1.0)
    call_target("chain-300 value+derivative call <= 8 us", "chain", "value_grad", 8.0)
    compile_target("MLP value+grad cold compile <= 2 s", "mlp", 2.0)
    compile_target("MLP value+grad warm compile (new process, cache filled) <= 0.3 s", "mlp", 0.3, warm=True)
    for problem in results:
        value, vg = _call(results, problem, "symdiff", "value"), _call(results, problem, "symdiff", "value_grad")
        ok = None if value is None or vg is None else vg <= 2.5 * value
        rows.append((f"{problem}: value+grad / value <= 2.5", "-" if ok is None else f"{vg / value:.2f}", verdict(ok)))
    return rows


def _call_cell(results, problem, impl, variant):
    entry = results[problem][impl]
    call = entry.get("call", {}).get(variant)
    if call is None:
        compiled = entry.get("compile", {}).get(variant)
        return f"(compile {fmt_s(compiled)})" if isinstance(compiled, str) else "-"
    if not isinstance(call, dict):
        return call  # "wrong" or "failed": see the notes
    text = fmt_us(call["median_s"])
    base = _call(results, problem, "symdiff", variant)
    if impl != "symdiff" and base:
        text += f" ({fmt_ratio(call['median_s'] / base)})"
    return text


def problem_section(problem, results, labels) -> list:
    entries = results[problem.name]
    lines = [f"### {problem.title}", ""]
    if not entries:
        return lines + ["Nothing was measured.", ""]
    lines += [
        "Median time per call in microseconds; in brackets, that time divided by symdiff's "
        "(above 1: slower than symdiff).", "",
        "| implementation | value | value+grad | HVP | value+grad / value |",
        "|---|---|---|---|---|",
    ]
    for impl, entry in entries.items():
        cells = [_call_cell(results, problem.name, impl, v) for v in ORDER]
        value, vg = _call(results, problem.name, impl, "value"), _call(results, problem.name, impl, "value_grad")
        ratio = f"{vg / value:.2f}" if value and vg else "-"
        lines.append(f"| {labels[impl]} | " + " | ".join(cells) + f" | {ratio} |")
    compiled = {impl: e for impl, e in entries.items() if any(v is not None for v in e.get("compile", {}).values())}
    if compiled:
        lines += [
            "", "Compile time, from building the function to its first result.  *Cold*: a new process with "
            "empty caches; value+grad is built first, so only its figure includes the process's first-compile "
            "start-up; value and HVP are built after it in the same process.  *Warm*: the same builds in another "
            "new process with the caches of the cold run.", "",
            "| implementation | value+grad, cold | value+grad, warm | value, cold | value, warm | HVP, cold "
            "| HVP, warm |",
            "|---|---|---|---|---|---|---|",
        ]
        for impl, entry in compiled.items():
            cold, warm = entry.get("compile", {}), entry.get("warm", {})
            cells = [fmt_s(times.get(v)) for v in ("value_grad", "value", "hvp") for times in (cold, warm)]
            lines.append(f"| {labels[impl]} | " + " | ".join(cells) + " |")
    notes = [(impl, n) for impl, e in entries.items() for n in e.get("notes", [])]
    if notes:
        lines += [""] + [f"- {labels[impl]}: {note}" for impl, note in notes]
    return lines + [""]


def render(problems, results, run) -> str:
    when = datetime.datetime.fromtimestamp(run["started"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Performance", "",
        f"Generated by `{run['command']}` on {when} in {run['seconds']:.0f} s. Do not edit by hand: rerun the script.",
        "All figures come from this one run; how they are taken is in `docs/architecture.md`, \"How the benchmarks measure\".",
        "The measurements behind the code generator's strategy (compile time against graph size for each",
        "alternative tried) are in `docs/architecture.md`, \"Code generation (Numba backend)\".", "",
    ]
    if run["quick"]:
        lines += ["**This is a --quick smoke run: few repeats and small problems only. Do not quote these "
                  "figures.**", ""]
    if run["symdiff_backend"] != "numba":
        lines += [f"**symdiff was measured with its {run['symdiff_backend']} backend, not Numba: the targets "
                  "below are for the Numba backend.**", ""]
    load = ", ".join(f"{a:.2f}" for a in run["load_before"]) + " before, " + \
        ", ".join(f"{a:.2f}" for a in run["load_after"]) + " after"
    lines += ["## Machine", ""] + machine() + [
        f"- load average (1, 5, 15 min): {load}; figures from a loaded machine are noisy",
        "- threads: " + (f"BLAS/OpenMP capped at {run['threads']} (--threads)" if run["threads"]
                         else "each library's default (BLAS, PyTorch and XLA use every core)"), "",
        "## Versions", "", versions(), "",
    ]
    if run["skipped"]:
        lines += ["Not measured: " + "; ".join(f"{run['labels'][k]}: {v}" for k, v in run["skipped"].items()), ""]
    lines += ["## Targets (issue 3, symdiff's Numba backend)", "", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {v} |" for t, m, v in targets(results)]
    lines += ["", "## Problems", ""]
    for problem in problems:
        lines += problem_section(problem, results, run["labels"])
    return "\n".join(lines).rstrip() + "\n"

