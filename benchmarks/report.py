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
        if problem in ("relu_matvec", "relu_matvec_none"):
            continue  # a vector result: no gradient
        value, vg = _call(results, problem, "symdiff", "value"), _call(results, problem, "symdiff", "value_grad")
        ok = None if value is None or vg is None else vg <= 2.5 * value
        rows.append((f"{problem}: value+grad / value <= 2.5", "-" if ok is None else f"{vg / value:.2f}", verdict(ok)))
    return rows


def _cpu(results, problem, impl, variant):
    call = results.get(problem, {}).get(impl, {}).get("call", {}).get(variant)
    return call.get("cpu_median_s") if isinstance(call, dict) else None


def _ratio_row(rows, text, mine, theirs, limit, verdict, cpu=None):
    """The verdict is on wall-clock medians; ``cpu`` (CPU seconds per call of both) is shown beside them."""
    ok = None if mine is None or theirs is None else mine <= limit * theirs
    shown = "-" if ok is None else f"{fmt_us(mine)} us vs {fmt_us(theirs)} us = {mine / theirs:.2f}x"
    if ok is not None and cpu and all(cpu):
        shown += f" (CPU {fmt_us(cpu[0])} vs {fmt_us(cpu[1])} us = {cpu[0] / cpu[1]:.2f}x)"
    rows.append((text, shown, verdict(ok)))


def _pair(results, a, b, variant):
    """((wall a, wall b), (cpu a, cpu b)) for (problem, impl) pairs a and b."""
    return ((_call(results, *a, variant), _call(results, *b, variant)),
            (_cpu(results, *a, variant), _cpu(results, *b, variant)))


def _verdict(ok):
    return "not measured" if ok is None else ("met" if ok else "**not met**")


def targets_14(results, background, scaling) -> list:
    """(target, measured, verdict) rows for issue 14."""
    rows = []
    for base in ("mlp", "logreg"):
        wall, cpu = _pair(results, (base + "_none", "symdiff"), (base, "jax"), "value_grad")
        _ratio_row(rows, f"{base}, sizes None: value+grad <= 1.0x JAX", *wall, 1.0, _verdict, cpu)
        wall, cpu = _pair(results, (base + "_none", "symdiff"), (base, "symdiff"), "value_grad")
        _ratio_row(rows, f"{base}: None-dims kernel <= 1.15x static-dims kernel (value+grad)", *wall, 1.15, _verdict, cpu)
    for base, variant in (("matmul_sum", "value_grad"), ("relu_matvec", "value")):
        for suffix, how in (("", "static"), ("_none", "sizes None")):
            wall, cpu = _pair(results, (base + suffix, "symdiff"), (base, "numpy"), variant)
            _ratio_row(rows, f"{base} {variant.replace('_', '+')}, {how}: <= 1.1x NumPy's `@`", *wall, 1.1, _verdict,
                       cpu)
    for base in ("tanh_sum", "softplus_sum", "exp_log1p_sum"):
        for suffix, how in (("", "static"), ("_none", "sizes None")):
            wall, cpu = _pair(results, (base + suffix, "symdiff"), (base, "numpy"), "value_grad")
            _ratio_row(rows, f"{base} value+grad, {how}: <= 1.0x NumPy's ufuncs", *wall, 1.0, _verdict, cpu)
    if background:
        for problem in background["problems"]:
            mine = background["factors"].get(problem, {}).get("symdiff")
            jax = background["factors"].get("mlp", {}).get("jax")  # JAX is not told sizes: one measurement
            cpu = "" if not (mine and jax and "cpu_factor" in mine and "cpu_factor" in jax) else \
                f" (CPU time: {mine['cpu_factor']:.2f}x vs {jax['cpu_factor']:.2f}x)"
            mine, jax = mine and mine["factor"], jax and jax["factor"]
            ok = None if mine is None or jax is None else mine <= jax + 0.5
            rows.append((f"{problem} under {background['n']} busy processes: symdiff's slowdown <= JAX's + 0.5",
                         "-" if ok is None else f"{mine:.2f}x vs JAX {jax:.2f}x" + cpu, _verdict(ok)))
    else:
        rows.append(("MLP under two busy processes: symdiff's slowdown <= JAX's + 0.5", "-", "not measured (run with "
                     "--background-load 2)"))
    entries = {e["name"]: e for e in (scaling or {}).get("results", [])}

    def scaling_row(text, name, limit_s, limit_gb=None):
        e = entries.get(name)
        if e is None:
            rows.append((text, "-", "not measured (benchmarks/compile_scaling.py)"))
            return
        if e.get("seconds") is None:
            rows.append((text, e.get("status", "failed"), _verdict(False)))
            return
        ok = e["seconds"] <= limit_s and (limit_gb is None or e["peak_rss_mb"] <= limit_gb * 1024)
        shown = f"{e['seconds']:.1f} s" + (f" (CPU {e['cpu_s']:.1f} s)" if "cpu_s" in e else "") + \
            (f", {e['peak_rss_mb'] / 1024:.2f} GB" if limit_gb else "")
        rows.append((text, shown, _verdict(ok)))

    scaling_row("chain of 40k forward nodes + gradient, cold sd.function <= 15 s", "chain_40000", 15)
    scaling_row("chain of 200k forward nodes + gradient, cold <= 90 s and 2 GB", "chain_200000", 90, 2)
    scaling_row("300 scalar inputs through sd.stack, cold <= 5 s", "stack_scalars_300", 5)
    for base in ("mlp", "mlp_none"):
        warm = _compile(results, base, "symdiff", "value_grad", warm=True)
        ok = None if warm is None else (isinstance(warm, float) and warm <= 0.15)
        rows.append((f"{base}: warm start (new process, cache filled: build to first result) <= 0.15 s", fmt_s(warm),
                     _verdict(ok)))
    flagged = sorted({p for p, e in results.items() for v in e.get("symdiff", {}).get("objmode", {}).values() if v})
    checked = any(e.get("symdiff", {}).get("objmode") for e in results.values())
    rows.append(("no object-mode block in generated kernels (every symdiff kernel built here)",
                 ("object mode in: " + ", ".join(flagged)) if flagged else ("none found" if checked else "-"),
                 _verdict(None if not checked else not flagged)))
    return rows


def none_dims_section(problems, results, labels) -> list:
    """The None-dims twin of each problem next to its static original, with the peers."""
    twins = [p for p in problems if p.dynamic and p.static_twin in results]
    if not twins:
        return []
    impls = [i for i in ("jax", "pytensor", "torch", "numpy", "numba") if any(
        i in results.get(p.static_twin, {}) for p in twins)]
    head = ["problem", "variant", "declared None", "symdiff None", "symdiff static", "None / static"]
    for impl in impls:
        head += [labels[impl] + " (static)", labels[impl] + " (None)"] if impl == "pytensor" else [labels[impl]]
    lines = ["## Sizes unknown until call time (issue 14)", "",
             "Each problem twice: its inputs declared with static sizes, and a twin whose inputs named in "
             "*declared None* have every size None (`sd.matrix(\"X\")`), so one kernel serves every batch. "
             "Median microseconds per call; in brackets, divided by symdiff's None-dims time. JAX, PyTorch and the "
             "hand-written code are not told sizes when they build, so they are measured once, on the static "
             "problem; PyTensor declares sizes like symdiff and is measured both ways.",
             ]
    loads = [c["load1"] for p in twins for name in (p.name, p.static_twin) for e in results.get(name, {}).values()
             for c in e.get("call", {}).values() if isinstance(c, dict) and "load1" in c]
    if loads:
        lines[-1] += f" Load average (1 min) after each measurement: {min(loads):.1f} to {max(loads):.1f}."
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for twin in twins:
        base = twin.static_twin
        for variant in ORDER:
            if variant not in twin.variants or variant == "hvp" and base not in ("mlp", "rosenbrock_1e6"):
                continue
            none, static = _call(results, twin.name, "symdiff", variant), _call(results, base, "symdiff", variant)
            cells = [base, VARIANT_LABEL[variant], ", ".join(twin.none_dims),
                     "-" if none is None else fmt_us(none), "-" if static is None else fmt_us(static),
                     "-" if none is None or static is None else f"{none / static:.2f}"]
            for impl in impls:
                for problem in ((base, twin.name) if impl == "pytensor" else (base,)):
                    t = _call(results, problem, impl, variant)
                    cells.append("-" if t is None else fmt_us(t) + (f" ({fmt_ratio(t / none)})" if none else ""))
            lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


VARIANT_LABEL = {"value": "value", "value_grad": "value+grad", "hvp": "HVP"}


def background_section(background) -> list:
    if not background:
        return []
    lines = [f"## Under load: {background['n']} busy processes (issue 14)", "",
             f"`--background-load {background['n']}`: value+grad of each problem below measured {background['rounds']} "
             "times quiet and loaded, alternating (each a new process with warm caches; the busy processes are pure "
             "Python spin loops started just before the loaded measurement and stopped after it). Factor = median "
             "of the loaded medians / median of the quiet medians; *per round*: each pair's factor. *Quiet* means "
             "without the added processes: other users of this shared machine keep running. Load average "
             f"at the start: {', '.join(f'{a:.2f}' for a in background['load_before'])}; at the end: "
             f"{', '.join(f'{a:.2f}' for a in background['load_after'])}.",
             "CPU: the worker process's CPU time per call (all its threads), quiet and loaded.", "",
             "| problem | implementation | quiet, us | loaded, us | slowdown factor | per round | CPU quiet, us | "
             "CPU loaded, us | CPU factor |", "|---|---|---|---|---|---|---|---|---|"]
    for problem in background["problems"]:
        for impl, f in background["factors"].get(problem, {}).items():
            lines.append(f"| {problem} | {background['labels'].get(impl, impl)} | {fmt_us(f['quiet_s'])} | "
                         f"{fmt_us(f['loaded_s'])} | {f['factor']:.2f}x | "
                         + ", ".join(f"{r:.2f}" for r in f["rounds"])
                         + (f" | {fmt_us(f['quiet_cpu_s'])} | {fmt_us(f['loaded_cpu_s'])} | {f['cpu_factor']:.2f}x |"
                            if "cpu_factor" in f else " | - | - | - |"))
    notes = background.get("notes", [])
    return lines + [""] + [f"- {n}" for n in notes] + ([""] if notes else [])


def scaling_section(scaling) -> list:
    if not scaling:
        return []
    load = scaling.get("load_before")
    lines = ["## Compile time against graph size (issue 14)", "",
             f"`{scaling['command']}` ({scaling['when']}; load average before "
             f"{', '.join(f'{a:.2f}' for a in load)}, after {', '.join(f'{a:.2f}' for a in scaling['load_after'])}). "
             "Each row is a new process with an empty kernel cache: building the graph and its gradient, "
             "`sd.function`, and the first call, with the process's peak resident memory; "
             f"stopped after {scaling['timeout_s']:.0f} s. Time per node = total / forward nodes; CPU = the process's own CPU seconds for the same span "
             "(on a shared machine the wall clock also counts waiting for a core).", "",
             "| graph | forward nodes | nodes with gradient | build + grad, s | sd.function to first result, s | "
             "total, s | CPU, s | time per forward node | peak memory, MB |", "|---|---|---|---|---|---|---|---|---|"]
    for e in scaling["results"]:
        if e.get("seconds") is None:
            lines.append(f"| {e['title']} | {e.get('forward_nodes', 0):,} | - | - | - | {e.get('status')} | - | - | "
                         f"{e.get('peak_rss_mb', 0):,.0f} |")
            continue
        per = e["seconds"] / max(e["forward_nodes"], 1)
        lines.append(f"| {e['title']} | {e['forward_nodes']:,} | {e.get('total_nodes', 0):,} | {e['graph_s']:.2f} | "
                     f"{e['compile_s']:.2f} | {e['seconds']:.2f} | "
                     + (f"{e['cpu_s']:.2f}" if "cpu_s" in e else "-")
                     + f" | {per * 1e6:,.0f} us | {e['peak_rss_mb']:,.0f} |")
    warm = scaling.get("warm", [])
    if warm:
        lines += ["", "Warm start: a second new process with the first one's kernel cache, the MLP value+grad "
                  "(build to first result, and the whole process from start to exit).", "",
                  "| problem | cold, s | warm build to first result, s | warm process wall, s |", "|---|---|---|---|"]
        for w in warm:
            lines.append(f"| {w['title']} | {w['cold_s']:.3f} | {w['warm_s']:.3f} | {w['warm_wall_s']:.2f} |")
    return lines + [""]


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
    if call.get("cpu_median_s"):
        text += f"; CPU {fmt_us(call['cpu_median_s'])}"
    return text


def problem_section(problem, results, labels) -> list:
    entries = results[problem.name]
    lines = [f"### {problem.title}", ""]
    if not entries:
        return lines + ["Nothing was measured.", ""]
    loads = [c["load1"] for e in entries.values() for c in e.get("call", {}).values()
             if isinstance(c, dict) and "load1" in c]
    load = f" Load average (1 min) after each measurement: {min(loads):.1f} to {max(loads):.1f}." if loads else ""
    lines += [
        "Median time per call in microseconds; in brackets, that time divided by symdiff's "
        "(above 1: slower than symdiff); *CPU*: the process's CPU time per call, all threads (where measured)."
        + load, "",
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


def render(problems, results, run, background=None, scaling=None) -> str:
    when = datetime.datetime.fromtimestamp(run["started"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Performance", "",
        f"Generated by `{run['command']}` on {when} in {run['seconds']:.0f} s. Do not edit by hand: rerun the script.",
        "All figures come from this one run; how they are taken is in `docs/architecture.md`, \"How the benchmarks measure\".",
        "The measurements behind the code generator's strategy (compile time against graph size for each",
        "alternative tried) are in `docs/architecture.md`, \"Code generation (Numba backend)\".", "",
    ]
    if run.get("remarks"):
        lines += [run["remarks"].strip(), ""]
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
    lines += ["", "## Targets (issue 14: sizes None, vector math, thin products, busy machine, big graphs)", "",
              "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {v} |" for t, m, v in targets_14(results, background, scaling)]
    lines += [""]
    lines += none_dims_section(problems, results, run["labels"])
    lines += background_section(background)
    lines += scaling_section(scaling)
    lines += ["## Problems", ""]
    for problem in problems:
        lines += problem_section(problem, results, run["labels"])
    return "\n".join(lines).rstrip() + "\n"

