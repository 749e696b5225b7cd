"""A fast-math rewrite: collect like terms of scalar polynomial regions.

The IEEE-exact rules of ``rewrite.py`` never reassociate, so they cannot turn
``a*b + b*a*2 - a*b`` into ``2*a*b``.  Without collecting like terms the k-th
derivative of tanh(x) is a graph of O(k^2) nodes per order (each product's Leibniz
terms stay separate), while as a polynomial in t = tanh(x) and s = sech2(x) (tanh's
derivative) it has degree k+1 and O(k) operations by Horner's rule.  ``optimize(fast_math=True)`` therefore finishes
with this pass.

A *region* is a maximal set of 0-d float nodes built by add, sub, neg, mul, pow
with a small constant integer exponent, and div by a constant.  Its *roots* are
region nodes that are outputs or feed a node outside the region; everything a
region reads that is not in it (inputs, tanh(x), other roots) is an *atom*.  Each
root is expanded into a sum of monomials over its atoms and re-emitted by
multivariate Horner; it is replaced only when that takes fewer nodes, and the
whole pass is dropped when the graph would not shrink.  Expansion can blow up (a
product of sums; a forward sweep's tangents multiplied through 1000 layers), so
polynomials are bounded (terms, atoms, degree, and a work budget for the pass):
where a node's expansion would exceed them, the region is cut below it (its
region inputs become roots) and collection goes on piecewise.  Only scalars are
collected: array regions would need every constant's broadcast tracked, and the
swell this pass exists for is in scalar derivatives.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Optional

import numpy as np

from . import ir
from .ir import Expr, make_node, node_count, toposort
from .ops import elementwise as E
from .ops.leaves import CONSTANT, const, numpy_dtype

MAX_TERMS = 128  # per polynomial
MAX_ATOMS = 16  # distinct atoms per polynomial
MAX_DEGREE = 64  # total degree of a monomial
MAX_POWER = 16  # the largest constant exponent of pow expanded
WORK_BUDGET = 500_000  # monomial products per pass (about 0.5 s): bounds the time on any graph
EMISSION_COST = 20  # products' worth of work per monomial factor a root's emission handles

Monomial = tuple  # ((atom id, power), ...) sorted by atom id
Polynomial = dict  # Monomial -> float coefficient


def _scalar_constant(x: Expr) -> Optional[float]:
    if x.op is CONSTANT and x.ndim == 0:
        return float(x.params["value"].array)
    return None


def _in_region(node: Expr) -> bool:
    if node.ndim != 0 or not node.type.is_float:
        return False
    name = node.op.name
    if name in ("add", "sub", "neg", "mul"):
        return True
    if name == "pow":
        exponent = _scalar_constant(node.inputs[1])
        return exponent is not None and exponent in range(MAX_POWER + 1)
    if name == "div":
        divisor = _scalar_constant(node.inputs[1])
        return divisor is not None and divisor != 0 and math.isfinite(1.0 / divisor)  # no subnormal divisors
    return False


def _add(p: Polynomial, q: Polynomial, scale: float = 1.0) -> Polynomial:
    out = dict(p)
    for monomial, c in q.items():
        total = out.get(monomial, 0.0) + scale * c
        if total == 0.0:
            out.pop(monomial, None)
        else:
            out[monomial] = total
    return out


def _mul(p: Polynomial, q: Polynomial) -> Optional[Polynomial]:
    out: Polynomial = {}
    for m1, c1 in p.items():
        for m2, c2 in q.items():
            if not m1 or not m2:
                monomial = m1 or m2
            else:
                powers = dict(m1)
                for atom, power in m2:
                    powers[atom] = powers.get(atom, 0) + power
                if sum(powers.values()) > MAX_DEGREE:
                    return None
                monomial = tuple(sorted(powers.items()))
            total = out.get(monomial, 0.0) + c1 * c2
            if total == 0.0:
                out.pop(monomial, None)
            else:
                out[monomial] = total
            if len(out) > MAX_TERMS:
                return None
    return out


class _Expander:
    """Polynomials of region nodes over atoms, memoized across roots."""

    def __init__(self, region: set, roots: set):
        self.region = region
        self.roots = roots
        self.memo: dict[int, Optional[Polynomial]] = {}
        self.atoms: dict[int, Expr] = {}
        self.budget = WORK_BUDGET

    def operand(self, x: Expr) -> Optional[Polynomial]:
        value = _scalar_constant(x)
        if value is not None:
            return {(): value} if value != 0.0 else {}
        if x.id in self.roots or x.id not in self.region:
            self.atoms[x.id] = x
            return {((x.id, 1),): 1.0}
        return self.memo[x.id]

    def expand(self, node: Expr) -> Optional[Polynomial]:
        """The polynomial of ``node`` (its region below was expanded first).

        When it is too big, the region is cut below ``node``: its region inputs
        become roots (atoms for ``node`` and everything after it), so a long chain
        of products (a forward sweep's tangents through 1000 layers) is collected
        piecewise instead of not at all."""
        result = self._combine(node, [self.operand(x) for x in node.inputs], self.budget > 0)
        if result is None:
            for x in node.inputs:
                if x.id in self.region:
                    self.roots.add(x.id)
            result = self._combine(node, [self.operand(x) for x in node.inputs], True)
        self.memo[node.id] = result
        return result

    def _combine(self, node: Expr, args: list, affordable: bool) -> Optional[Polynomial]:
        if any(a is None for a in args) or not affordable:
            return None
        self.budget -= 1 + sum(len(a) for a in args)
        name = node.op.name
        if name == "add":
            result = _add(args[0], args[1])
        elif name == "sub":
            result = _add(args[0], args[1], -1.0)
        elif name == "neg":
            result = _add({}, args[0], -1.0)
        elif name == "mul":
            result = self.mul(args[0], args[1])
        elif name == "div":
            result = _add({}, args[0], 1.0 / _scalar_constant(node.inputs[1]))
        else:  # pow with a constant integer exponent
            result = {(): 1.0}
            for _ in range(int(_scalar_constant(node.inputs[1]))):
                result = self.mul(result, args[0]) if result is not None else None
        if result is None or len(result) > MAX_TERMS or not all(math.isfinite(c) for c in result.values()):
            return None
        if len({atom for monomial in result for atom, _ in monomial}) > MAX_ATOMS:
            return None
        return result

    def mul(self, p: Polynomial, q: Polynomial) -> Optional[Polynomial]:
        self.budget -= len(p) * len(q)
        return _mul(p, q) if self.budget > 0 else None


def _horner(poly: Polynomial, atoms: dict, dtype: str) -> Expr:
    """Emit ``poly``: factor out the atom in most monomials, recurse on quotient and rest."""
    if not poly:
        return const(0, dtype)
    counts = Counter(atom for monomial in poly for atom, _ in monomial)
    if not counts:
        return const(poly[()], dtype)
    if len(poly) == 1:
        ((monomial, coefficient),) = poly.items()
        product = None
        for atom, power in monomial:
            for _ in range(power):
                product = atoms[atom] if product is None else make_node(E.MUL, (product, atoms[atom]), {})
        if coefficient == -1.0:
            return make_node(E.NEG, (product,), {})
        if coefficient != 1.0:
            return make_node(E.MUL, (const(coefficient, dtype), product), {})
        return product
    atom = counts.most_common(1)[0][0]
    quotient, rest = {}, {}
    for monomial, coefficient in poly.items():
        powers = dict(monomial)
        if atom in powers:
            powers[atom] -= 1
            if not powers[atom]:
                del powers[atom]
            quotient[tuple(sorted(powers.items()))] = coefficient
        else:
            rest[monomial] = coefficient
    term = make_node(E.MUL, (_horner(quotient, atoms, dtype), atoms[atom]), {})
    return term if not rest else make_node(E.ADD, (term, _horner(rest, atoms, dtype)), {})


def collect_polynomials(outputs: list) -> list:
    """``outputs`` with each scalar polynomial region re-emitted by Horner's rule when smaller.

    >>> import symdiff as sd
    >>> from symdiff.polynomials import collect_polynomials
    >>> a, b = sd.scalars("a b")
    >>> (e,) = collect_polynomials([a * b + b * a * 2 - a * b])
    >>> print(sd.to_text(e, optimize=False))
    %0 = constant 2.0 : f64[]
    a = input : f64[]
    b = input : f64[]
    %3 = mul a b : f64[]
    %4 = mul %0 %3 : f64[]
    output out = %4
    """
    nodes = toposort(outputs)
    region = {n.id for n in nodes if _in_region(n)}
    consumers_outside = set(o.id for o in outputs)
    for node in nodes:
        if node.id not in region:
            consumers_outside.update(x.id for x in node.inputs)
    roots = region & consumers_outside
    expander = _Expander(region, roots)
    for node in nodes:  # first expand everything: expanding may add roots (cuts)
        if node.id in region:
            expander.expand(node)
    first_new_id = ir.new_node_mark()  # nodes from here on were made by this pass
    rebuilt: dict[int, Expr] = {}  # old node id -> its node in the new graph
    for node in nodes:
        poly = expander.memo.get(node.id)
        # A root whose inputs are all outside the region is one operation already.
        worth_trying = poly is not None and any(x.id in region and x.id not in roots for x in node.inputs)
        if node.id in roots and worth_trying and expander.budget > 0:
            # Emitting and comparing one root costs about what EMISSION_COST products do.
            expander.budget -= EMISSION_COST * (len(poly) + sum(len(monomial) for monomial in poly))
            emitted = _smaller_emission(node, poly, expander, rebuilt)
            if emitted is not None:
                rebuilt[node.id] = emitted
                continue
        inputs = tuple(rebuilt.get(x.id, x) for x in node.inputs)
        if any(a is not b for a, b in zip(inputs, node.inputs)):
            rebuilt[node.id] = ir.inherit_provenance(make_node(node.op, inputs, node.params), node, first_new_id)
    new_outputs = [rebuilt.get(o.id, o) for o in outputs]
    if all(a is b for a, b in zip(new_outputs, outputs)):
        return list(outputs)
    # Roots share region nodes, so each one shrinking need not shrink the whole.
    return new_outputs if node_count(new_outputs) < node_count(outputs) else list(outputs)


def _smaller_emission(root: Expr, poly: Polynomial, expander: _Expander, rebuilt: dict) -> Optional[Expr]:
    """``poly`` by Horner's rule over the new graph's atoms, if that takes fewer operations
    than ``root``'s region and its coefficients fit the root's dtype."""
    if max((abs(c) for c in poly.values()), default=0.0) > float(np.finfo(numpy_dtype(root.dtype)).max):
        return None  # a coefficient folded from float32 constants overflows float32
    region_size = len(_operations_above(root, lambda n: n is root or (
        n.id in expander.region and n.id not in expander.roots)))
    # Any emission adds its terms and multiplies at least once for a product of atoms.
    fewest = len(poly) - 1 + any(sum(p for _, p in monomial) > 1 for monomial in poly)
    if region_size <= fewest:
        return None
    # Atoms precede the root in topological order, so their new nodes exist.
    atom_ids = {atom for monomial in poly for atom, _ in monomial}
    new_atoms = {a: rebuilt.get(a, expander.atoms[a]) for a in atom_ids}
    new_atom_ids = {x.id for x in new_atoms.values()}
    first_new_id = ir.new_node_mark()
    emitted = _horner(poly, new_atoms, root.dtype)
    new_nodes = _operations_above(emitted, lambda n: n.id not in new_atom_ids)
    if len(new_nodes) >= region_size:
        return None
    for created in new_nodes:
        ir.inherit_provenance(created, root, first_new_id)
    return emitted


def _operations_above(top: Expr, inside) -> list:
    """The distinct operations (non-leaf nodes) reachable from ``top`` through nodes for
    which ``inside(node)`` holds; the walk never leaves them, so it costs their number."""
    seen, found, stack = set(), [], [top]
    while stack:
        node = stack.pop()
        if node.id in seen or not node.inputs or not inside(node):
            continue
        seen.add(node.id)
        found.append(node)
        stack.extend(node.inputs)
    return found
