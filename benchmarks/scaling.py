"""Graph size and build times of differentiation on deep chains.

Prints two tables (the figures in docs/architecture.md ("Graph size and deep graphs")):

1. For the chain x <- sin(x) * x + cos(x) repeated n times (n = 10, 100, 1000):
   operation nodes of the forward graph, forward + gradient, forward + HVP
   (both modes), next to what a naive tree expansion would produce.
2. For the 25k-layer chain (100k forward nodes): wall-clock seconds to build it,
   differentiate it, evaluate value and derivative with the NumPy evaluator, and
   count its nodes.

    python benchmarks/scaling.py              # both tables
    python benchmarks/scaling.py --repeat 3   # best of 3 for the timings
    python benchmarks/scaling.py --sympy      # also SymPy's expression size for small n
    python benchmarks/scaling.py --sweep      # also sd.grad's time at 2.5k ... 25k layers
"""

import argparse
import gc
import sys
import time

import symdiff as sd


def sin_chain(x, n):
    for _ in range(n):
        x = sd.sin(x) * x + sd.cos(x)
    return x


def naive_expansion(output):
    """(operations, paths) of ``output`` expanded as a tree, by one pass in topological order.

    operations: the op count of the fully expanded tree (every use of a node
    copies its whole subtree), which is what printing the formula writes out.
    paths: the number of paths from ``output`` to its symbols, counted with
    multiplicity; expanding the chain rule as a sum over paths gives one product
    term per path, so this is the number of terms of the naive derivative.
    """
    operations, paths = {}, {}
    for node in sd.toposort(output):
        if node.op.kind == "leaf":
            operations[node.id] = 0
            paths[node.id] = 1 if node.is_symbol else 0
        else:
            operations[node.id] = 1 + sum(operations[x.id] for x in node.inputs)
            paths[node.id] = sum(paths[x.id] for x in node.inputs)
    return operations[output.id], paths[output.id]


def big(number: int) -> str:
    """An exact int for small values, else scientific notation (3**1000 has 478 digits)."""
    digits = str(number)
    return digits if len(digits) <= 9 else f"{digits[0]}.{digits[1:3]}e{len(digits) - 1}"


def size_table(sizes=(10, 100, 1000)):
    print("chain x <- sin(x)*x + cos(x), n layers: operation nodes (sd.node_count)")
    header = ("n", "forward", "fwd+grad", "fwd+HVP rev-rev", "fwd+HVP fwd-rev", "naive tree ops", "naive paths 3^n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for n in sizes:
        x, v = sd.scalar(f"x{n}"), sd.scalar(f"v{n}")
        f = sin_chain(x, n)
        row = [
            n,
            sd.node_count(f),
            sd.node_count([f, sd.grad(f, x)]),
            sd.node_count([f, sd.hvp(f, x, v, mode="rev-rev")]),
            sd.node_count([f, sd.hvp(f, x, v, mode="fwd-rev")]),
            *map(big, naive_expansion(f)),
        ]
        print("| " + " | ".join(map(str, row)) + " |")


def sympy_table(sizes=(1, 2, 3, 4, 5, 6)):
    import sympy

    print("\nSymPy on the same chain: operations in the expression and in its derivative (sympy.count_ops)")
    print("| n | forward | diff | diff seconds |")
    print("|---|---|---|---|")
    x = sympy.Symbol("x")
    for n in sizes:
        f = x
        for _ in range(n):
            f = sympy.sin(f) * f + sympy.cos(f)
        start = time.perf_counter()
        d = sympy.diff(f, x)
        seconds = time.perf_counter() - start
        print(f"| {n} | {sympy.count_ops(f)} | {sympy.count_ops(d)} | {seconds:.3f} |")


def time_deep(layers=25_000, repeat=1):
    best = {}
    for attempt in range(repeat):
        x = sd.scalar(f"x_deep_{attempt}")  # a fresh symbol: hash-consing must not reuse an earlier run's nodes
        start = time.perf_counter()
        f = sin_chain(x, layers)
        steps = {"build": time.perf_counter() - start}
        start = time.perf_counter()
        g = sd.grad(f, x)
        steps["grad"] = time.perf_counter() - start
        start = time.perf_counter()
        sd.evaluate([f, g], {x: 0.3})
        steps["evaluate value+grad"] = time.perf_counter() - start
        start = time.perf_counter()
        counts = sd.node_count(f), sd.node_count([f, g])
        steps["node_count (both)"] = time.perf_counter() - start
        del f, g
        gc.collect()
        for step, seconds in steps.items():
            best[step] = min(seconds, best.get(step, seconds))
    print(f"\n{layers}-layer chain: {counts[0]} forward nodes, {counts[1]} with the gradient "
          f"(best of {repeat}, recursion limit {sys.getrecursionlimit()})")
    print("| step | seconds |")
    print("|---|---|")
    for step, seconds in best.items():
        print(f"| {step} | {seconds:.2f} |")


def grad_sweep(layer_counts=(2_500, 5_000, 10_000, 25_000)):
    """sd.grad's time against depth: linear means constant microseconds per node."""
    print("\nsd.grad time against depth (one run each)")
    print("| layers | forward nodes | grad seconds | us per forward node |")
    print("|---|---|---|---|")
    for layers in layer_counts:
        x = sd.scalar(f"x_sweep_{layers}")
        f = sin_chain(x, layers)
        start = time.perf_counter()
        sd.grad(f, x)
        seconds = time.perf_counter() - start
        print(f"| {layers} | {4 * layers} | {seconds:.2f} | {seconds / (4 * layers) * 1e6:.1f} |")
        del f
        gc.collect()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="timing runs of the deep chain (best is shown)")
    parser.add_argument("--layers", type=int, default=25_000, help="layers of the deep chain (4 nodes each)")
    parser.add_argument("--sympy", action="store_true", help="also measure SymPy's expansion for n = 1..6")
    parser.add_argument("--sweep", action="store_true", help="also time sd.grad at 2.5k, 5k, 10k, 25k layers")
    args = parser.parse_args()
    size_table()
    if args.sympy:
        sympy_table()
    time_deep(args.layers, args.repeat)
    if args.sweep:
        grad_sweep()


if __name__ == "__main__":
    main()
