"""The seed example: e = (a + b) * (b + 1) at a = 2, b = 1.

Prints the forward graph, then the nodes that ``sd.grad`` appended to the same
graph, each with its value, and the two partial derivatives (2 and 5).

    python examples/seed.py
"""

import symdiff as sd


def listing(nodes, values):
    for node in nodes:
        if node.is_symbol:
            text = f"{node.name} = input"
        elif node.is_constant:
            text = f"%{node.id} = constant"
        else:
            text = f"%{node.id} = {node.op.name} " + " ".join(x.label() for x in node.inputs)
        note = f"   # {node.note}" if node.note else ""
        print(f"  {text:<24} : {node.type!r:<6} = {values[node.id]:g}{note}")


def main():
    a, b = sd.scalars("a b")
    e = (a + b) * (b + 1)
    de_da, de_db = sd.grad(e, [a, b])

    forward = sd.toposort(e)
    everything = sd.toposort([e, de_da, de_db])
    appended = [n for n in everything if n.id not in {f.id for f in forward}]
    at = {a: 2.0, b: 1.0}
    values = dict(zip((n.id for n in everything), sd.evaluate(everything, at)))

    print("forward graph of e = (a + b) * (b + 1) at a = 2, b = 1:")
    listing(forward, values)
    print("nodes appended by sd.grad(e, [a, b]):")
    listing(appended, values)
    print(f"e = {values[e.id]:g}, de/da = {values[de_da.id]:g}, de/db = {values[de_db.id]:g}")


if __name__ == "__main__":
    main()
