"""Write docs/api.md from the docstrings of symdiff's public names.

    python docs/gen_api.py          # rewrite docs/api.md
    python docs/gen_api.py --check  # exit 1 if docs/api.md is out of date

tests/test_docs.py runs the check, so the API reference cannot drift from the code.
"""

import inspect
import pathlib
import re
import sys

import symdiff as sd

OUT = pathlib.Path(__file__).resolve().parent / "api.md"

SECTIONS = [  # (title, module or package): a name lands in the first section whose module holds it
    ("Building expressions", "symdiff.frontend"),
    ("Users' ops and derivative rules", "symdiff.custom"),
    ("Differentiation", "symdiff.autodiff"),
    ("Jacobians, Hessians, sparsity", "symdiff.jacobians"),
    ("Jacobians, Hessians, sparsity", "symdiff.sparsity"),
    ("Loops", "symdiff.loops"),
    ("Loops", "symdiff.ops.loops"),
    ("Evaluation and compilation", "symdiff.evaluate"),
    ("Evaluation and compilation", "symdiff.function"),
    ("Rewrites and verification", "symdiff.rewrite"),
    ("Rewrites and verification", "symdiff.verify"),
    ("Printers", "symdiff.printers"),
    ("Printers", "symdiff.sympy_bridge"),
    ("Testing helpers", "symdiff.testing"),
    ("Graph and types", "symdiff.ir"),
    ("Graph and types", "symdiff.types"),
    ("Errors", "symdiff.errors"),
]


def public_names():
    names = getattr(sd, "__all__", None) or [n for n in dir(sd) if not n.startswith("_")]
    out = []
    for name in sorted(names):
        obj = getattr(sd, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", "").startswith("symdiff"):
            out.append((name, obj))
    return out


# Namespaces with SciPy's (or NumPy's) module names: sd.special, sd.signal, sd.linalg...
NAMESPACES = ["special", "signal", "linalg", "distributed"]


def namespace_names(namespace: str):
    """(name, object) for each public function of ``sd.<namespace>``, or None when it
    cannot be imported here (an optional extra that is not installed)."""
    import importlib

    try:
        module = importlib.import_module(f"symdiff.{namespace}")
    except ImportError:
        return None
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    out = []
    for name in sorted(names):
        obj = getattr(module, name, None)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", "").startswith("symdiff"):
            out.append((name, obj))
    return out


def signature(name, obj):
    try:
        text = f"{name}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        return name
    return re.sub(r"<object object at 0x[0-9a-f]+>", "<unset>", text)  # a sentinel default: no address


def entry(qualified: str, name: str, obj) -> list:
    """The markdown for one function or class: its signature, then its docstring with
    the examples as pycon blocks."""
    kind = "class " if inspect.isclass(obj) else ""
    lines = [f"### `{kind}{qualified[: -len(name)]}{signature(name, obj)}`", ""]
    doc = inspect.getdoc(obj) or "(no docstring)"
    in_example = False
    for line in doc.splitlines():
        if line.startswith(">>>") and not in_example:
            lines.append("```pycon")
            in_example = True
        elif in_example and not line.strip():
            lines.append("```")
            in_example = False
        lines.append(line)
    if in_example:
        lines.append("```")
    lines.append("")
    return lines


def render() -> str:
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `python docs/gen_api.py`; do not edit by hand.",
        "Every example runs as a doctest (`pytest --doctest-modules symdiff`).",
        "",
    ]
    names = public_names()
    done = set()
    sections: dict[str, list] = {}
    for title, module in SECTIONS:
        for name, obj in names:
            if (obj.__module__ == module or obj.__module__.startswith(module + ".")) and name not in done:
                sections.setdefault(title, []).append((name, obj))
                done.add(name)
    rest = [(n, o) for n, o in names if n not in done]
    if rest:
        sections.setdefault("Other", []).extend(rest)
    top_level = {id(obj): name for name, obj in names}
    for title, entries in sections.items():
        lines += [f"## {title}", ""]
        for name, obj in entries:
            lines += entry(f"sd.{name}", name, obj)
    for namespace in NAMESPACES:
        entries = namespace_names(namespace)
        if not entries:
            continue
        lines += [f"## `sd.{namespace}`", ""]
        for name, obj in entries:
            if id(obj) in top_level:
                lines += [f"### `sd.{namespace}.{name}`", "", f"The same function as `sd.{top_level[id(obj)]}`.", ""]
            else:
                lines += entry(f"sd.{namespace}.{name}", name, obj)
    return "\n".join(lines).rstrip() + "\n"


def main():
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print("docs/api.md is out of date: run python docs/gen_api.py")
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
