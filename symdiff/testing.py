"""Derivative checking: symdiff's derivatives against finite differences.

``check_grads`` (reverse mode, ``sd.grad``), ``check_jvp`` (forward mode,
``sd.jvp``) and ``check_hvp`` (``sd.hvp``, both modes) compare the derivative
graphs symdiff builds with central finite differences of the NumPy reference
evaluator along random directions, in the spirit of HIPS autograd's
``check_grads``.  Higher orders are checked recursively: the order-2 check of
``check_grads`` differentiates the directional derivative <grad f, u> again, so
it exercises the derivative rules of the derivative graph itself.

The finite differences are central differences at steps h, h/2 and h/4; the
last two are Richardson-extrapolated (error O(h**4), about 1e-11 relative in
float64).  The allowed error is scale-aware: ``rtol`` times the size of the
derivative, plus a tenth of the h/2 vs h/4 spread (what extrapolation can leave),
plus the rounding bound eps * F / h, where F is the largest value computed on
the way to f (f itself may cancel to ~0).  Where the differences do not converge
like h**2 a kink lies between the sample points; that is reported as such
rather than compared.  Float32 graphs get float32 steps and tolerances.

Every failure raises :class:`GradCheckError` (an AssertionError) naming what
was checked, the point, the direction, both numbers and the expression.
"""

from __future__ import annotations

import inspect

import numpy as np

from .autodiff import grad, hvp, jvp
from .evaluate import bind_inputs, evaluate, run
from .frontend import astype, constant, tensor
from .frontend import sum as sd_sum
from .ir import Expr, as_list, symbols_of, toposort
from .ops.leaves import numpy_dtype
from .types import dtype_of_array

__all__ = ["GradCheckError", "check_grads", "check_hvp", "check_jvp", "check_op"]

# Per precision: the finite-difference step (relative to max(1, |x|)) and rtol.
# The step balances the h**4 truncation error of Richardson extrapolation
# against the eps / h rounding error (h ~ eps ** (1/5)).
_SETTINGS = {
    "float64": {"step": 1e-3, "rtol": 1e-6},
    "float32": {"step": 1e-2, "rtol": 5e-3},
}
_NOISE_SAFETY = 100.0  # ulps of rounding a small graph may accumulate
_CONVERGENCE = 0.5  # smooth: halving the step shrinks the change in the difference by ~4
_SPREAD_WEIGHT = 0.1  # for smooth f the extrapolated error is far below the h/2 vs h/4 spread


class GradCheckError(AssertionError):
    """A derivative disagrees with finite differences (or they cannot be trusted)."""


# --------------------------------------------------------------------- setup


class _Problem:
    """What is checked: an output, the symbols varied, the point, the precision."""

    def __init__(self, output: Expr, wrt: list, point: dict, label: str, step, rtol, atol, rng):
        self.output = output
        self.wrt = wrt
        self.point = point  # {symbol: read-only array of the symbol's dtype}
        self.label = label
        self.listing = _listing(output)
        dtypes = {n.dtype for n in toposort(output) if n.type.is_float} | {w.dtype for w in wrt}
        precision = "float32" if "float32" in dtypes else "float64"
        self.eps = float(np.finfo(precision).eps)
        self.step = _SETTINGS[precision]["step"] if step is None else float(step)
        self.rtol = _SETTINGS[precision]["rtol"] if rtol is None else float(rtol)
        self.atol = float(atol)
        self.rng = rng


def _setup(f, wrt, values, label, step, rtol, atol, rng, need_scalar) -> _Problem:
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if isinstance(f, Expr):
        output = f
        symbols = symbols_of(output)
        bound = bind_inputs(symbols, values)
        point = {s: bound[s.id] for s in symbols}
        if wrt is None:
            wrt_list = [s for s in symbols if s.type.is_float]
        else:
            wrt_list, _ = as_list(wrt)
        label = label or f"{output.op.name} ({output.label()})"
    elif callable(f):
        output, wrt_list, point = _trace(f, wrt, values)
        label = label or getattr(f, "__name__", repr(f))
    else:
        raise TypeError(f"expected a symdiff expression or a function building one, got {type(f).__name__} {f!r}")
    for w in wrt_list:
        if not w.is_symbol:
            raise TypeError(f"{label}: derivatives are checked with respect to symbols, got {w!r}")
        if not w.type.is_float:
            raise TypeError(f"{label}: cannot check derivatives with respect to {w.name!r} of type {w.type!r}")
        if w not in point:
            raise ValueError(f"{label}: the output does not depend on {w.name!r}; nothing to check")
    if not output.type.is_float:
        output = astype(output, "float64")
    if need_scalar and output.ndim:
        # A fixed random weighting makes any output a scalar cost whose gradient
        # still sees every element (sum(out * W) with W of out's shape).
        weights = rng.standard_normal(_runtime_shape(output, point))
        output = sd_sum(output * constant(weights.astype(numpy_dtype(output.dtype))))
    return _Problem(output, wrt_list, point, label, step, rtol, atol, rng)


def _runtime_shape(output: Expr, point: dict) -> tuple:
    """The run-time shape of ``output`` at ``point`` (static dims need no evaluation)."""
    if None not in output.type.shape:
        return output.type.shape
    return np.shape(evaluate(output, point))


def _trace(fn, wrt, values):
    """Symbols shaped like ``values`` (named after fn's parameters), and fn applied to them."""
    if isinstance(values, dict) or values is None:
        raise TypeError("for a function, give values as a sequence: one array or number per positional argument")
    arrays = [np.asarray(v) for v in values]
    try:
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):  # builtins without a signature
        params = []
    names = [params[i] if i < len(params) else f"x{i}" for i in range(len(arrays))]
    symbols = [tensor(name, a.shape, dtype_of_array(a)) for name, a in zip(names, arrays)]
    output = fn(*symbols)
    if not isinstance(output, Expr):
        raise TypeError(f"{getattr(fn, '__name__', fn)} returned {type(output).__name__}, not a symdiff expression")
    if wrt is None:
        wrt_list = [s for s in symbols if s.type.is_float]
    else:
        picks = [wrt] if isinstance(wrt, (int, str)) else list(wrt)
        wrt_list = [symbols[names.index(p)] if isinstance(p, str) else symbols[p] for p in picks]
    point = {s: np.asarray(a, dtype=numpy_dtype(s.dtype)) for s, a in zip(symbols, arrays)}
    return output, wrt_list, point


def _listing(output: Expr, limit: int = 40) -> str:
    nodes = [n for n in toposort(output) if not n.is_symbol]
    lines = [repr(n)[5:-1] for n in nodes[-limit:]]
    if len(nodes) > limit:
        lines.insert(0, f"... ({len(nodes) - limit} earlier nodes)")
    return "\n".join("    " + line for line in lines)


# -------------------------------------------------------- finite differences


def _directions(problem: _Problem) -> dict:
    """A random direction per wrt symbol, scaled like its values (max(1, |x|))."""
    out = {}
    for w in problem.wrt:
        x = np.asarray(problem.point[w], dtype=np.float64)
        u = problem.rng.uniform(-1.0, 1.0, size=x.shape) * np.maximum(1.0, np.abs(x))
        out[w] = u.astype(numpy_dtype(w.dtype))
    return out


def _shifted(problem: _Problem, direction: dict, t: float) -> dict:
    values = dict(problem.point)
    for w, u in direction.items():
        moved = np.asarray(problem.point[w], dtype=np.float64) + t * u.astype(np.float64)
        values[w] = moved.astype(numpy_dtype(w.dtype))
    return values


class _Differences:
    """Central differences of some outputs along a direction, at steps h, h/2 and h/4.

    ``values``: Richardson extrapolation of the h/2 and h/4 differences (error
    O(h**4)).  ``spread``: how far those two disagree, a bound on what the
    extrapolation leaves.  ``noise``: the rounding bound eps * F / h, where F is
    the largest value the computation of f handles (f itself may cancel).  For a
    smooth f the differences converge like h**2, so the h/2 vs h/4 spread is a
    quarter of the h vs h/2 one (``coarse_spread``); where it is not, beyond
    rounding, a kink lies between the sample points.
    """

    def __init__(self, problem: _Problem, outputs: list, direction: dict):
        h = problem.step

        def central(t):
            plus = evaluate(outputs, _shifted(problem, direction, t))
            minus = evaluate(outputs, _shifted(problem, direction, -t))
            pairs = [(np.asarray(p, dtype=np.float64), np.asarray(m, dtype=np.float64)) for p, m in zip(plus, minus)]
            return [(p - m) / (2 * t) for p, m in pairs], [np.maximum(np.abs(p), np.abs(m)) for p, m in pairs]

        (coarse, size), (middle, _), (fine, _) = central(h), central(h / 2), central(h / 4)
        largest = _largest_intermediate(outputs, problem.point)
        self.values, self.spread, self.coarse_spread, self.noise = [], [], [], []
        for d1, d2, d4, f in zip(coarse, middle, fine, size):
            noise = _NOISE_SAFETY * problem.eps * np.maximum(f, largest) / h
            self.values.append(d4 + (d4 - d2) / 3)
            self.spread.append(np.abs(d4 - d2))
            self.noise.append(noise)
            self.coarse_spread.append(np.abs(d2 - d1))


def _largest_intermediate(outputs: list, point: dict) -> float:
    """The largest finite magnitude among the values computing ``outputs`` at ``point``."""
    nodes = toposort(outputs)
    values = run(nodes, bind_inputs([n for n in nodes if n.is_symbol], point))
    largest = 0.0
    for node in nodes:
        if node.type.is_float:
            v = np.abs(values[node.id])
            finite = v[np.isfinite(v)]
            if finite.size:
                largest = max(largest, float(finite.max()))
    return largest


def _compare(problem: _Problem, what: str, analytic: list, fd: _Differences, names: list, direction: dict):
    """Raise GradCheckError unless each analytic array matches its finite difference."""
    for name, a, n, spread, coarse, noise in zip(names, analytic, fd.values, fd.spread, fd.coarse_spread, fd.noise):
        a = np.asarray(a, dtype=np.float64)
        # Rounding in f can exceed eps * |f| where f cancels; below rtol of the
        # largest derivative a non-converging spread is that noise, not a kink.
        scale = float(np.max(np.maximum(np.abs(a), np.abs(n)), initial=0.0))
        kinked = spread > _CONVERGENCE * coarse + noise + problem.rtol * scale
        if not np.all(np.isfinite(n)):
            _fail(problem, what, name, a, n, direction, "the finite differences are not finite (a singularity "
                  "within one step of the point?)")
        if np.any(kinked):
            _fail(problem, what, name, a, n, direction, "the function is not smooth at the scale of the step "
                  f"(central differences with steps h={problem.step:g}, h/2 and h/4 do not converge); "
                  "choose a point away from kinks")
        allowed = problem.atol + problem.rtol * np.maximum(np.abs(a), np.abs(n)) + _SPREAD_WEIGHT * spread + noise
        error = np.abs(a - n)
        if not np.all(error <= allowed) or not np.all(np.isfinite(a)):
            worst = np.unravel_index(np.argmax(np.where(np.isfinite(a), error - allowed, np.inf)), error.shape)
            _fail(problem, what, name, a, n, direction,
                  f"|analytic - numeric| = {float(error[worst]):.6g} > allowed {float(allowed[worst]):.3g} "
                  f"(rtol {problem.rtol:g}, fd spread {float(spread[worst]):.3g}, rounding {float(noise[worst]):.3g})"
                  + (f" at index {tuple(int(i) for i in worst)}" if error.ndim else ""))


def _fmt(value, indent: int = 0) -> str:
    text = np.array2string(np.asarray(value), precision=17, threshold=50, max_line_width=110, separator=", ")
    return text.replace("\n", "\n" + " " * indent)


def _fail(problem: _Problem, what: str, name: str, analytic, numeric, direction: dict, why: str,
          labels=("symdiff", "finite differences")):
    lines = [f"{what} of {problem.label}: {why}"]
    lines.append(f"  checked: {name}")
    lines.append("  point:")
    lines += [f"    {s.name} = {_fmt(v, 7 + len(s.name))}" for s, v in problem.point.items()]
    lines.append("  direction:")
    lines += [f"    d{w.name} = {_fmt(u, 8 + len(w.name))}" for w, u in direction.items()]
    width = max(len(label) for label in labels) + 4
    lines.append(f"  {labels[0] + ':':{width - 2}}{_fmt(analytic, width)}")
    lines.append(f"  {labels[1] + ':':{width - 2}}{_fmt(numeric, width)}")
    lines.append("  expression:")
    lines.append(problem.listing)
    raise GradCheckError("\n".join(lines))


def _inner(pairs) -> Expr:
    """sum_i <a_i, b_i> as one scalar node."""
    total = None
    for a, b in pairs:
        term = sd_sum(a * b)
        total = term if total is None else total + term
    return total


# ------------------------------------------------------------------ checks


def check_grads(f, wrt=None, values=None, *, order=2, rng=0, step=None, rtol=None, atol=0.0, label=None):
    """Check ``sd.grad`` against finite differences, at every order up to ``order``.

    ``f`` is a symdiff expression or a function building one.  For an expression,
    ``values`` maps each of its symbols (or their names) to a value and ``wrt``
    lists the symbols to vary (default: every float symbol).  For a function,
    ``values`` is a sequence with one array or number per positional argument,
    symbols of those shapes and dtypes (named after the parameters) are passed
    in, and ``wrt`` picks arguments by index or name (default: the float ones).

    Order 1 compares <grad f, u> with the finite difference of f along a random
    direction u; order 2 checks the gradient of that expression, <grad f, u>, the
    same way (the second derivative along u and w); and so on.  A non-scalar
    ``f`` is first reduced to sum(f * W) with a fixed random W.  ``rng`` seeds the
    directions; ``step``, ``rtol`` and ``atol`` override the defaults chosen by
    precision (float64 or float32).  Raises GradCheckError on a mismatch.

    >>> import symdiff as sd
    >>> from symdiff.testing import check_grads
    >>> check_grads(lambda x, y: sd.sum(sd.sin(x) * y), values=([0.5, 1.0], 2.0))
    >>> x = sd.vector("x", 2)
    >>> check_grads(sd.logsumexp(x), x, {x: [1.0, -2.0]}, order=3)
    """
    problem = _setup(f, wrt, values, label, step, rtol, atol, rng, need_scalar=True)
    cost = problem.output
    for level in range(1, order + 1):
        gradients = grad(cost, problem.wrt, mode="rev")
        direction = _directions(problem)
        derivative = _inner((g, constant(direction[w])) for g, w in zip(gradients, problem.wrt))
        analytic = evaluate(derivative, problem.point)
        fd = _Differences(problem, [cost], direction)
        what = f"reverse-mode derivative (order {level} of {order})"
        try:
            _compare(problem, what, [analytic], fd, ["<grad f, u>"], direction)
        except GradCheckError as exc:
            raise GradCheckError(f"{exc}\n  per input:\n{_per_input(problem, cost, gradients, direction)}") from None
        cost = derivative


def _per_input(problem: _Problem, cost: Expr, gradients: list, direction: dict) -> str:
    """For a failed joint check, each input's own <grad, u> against its finite difference."""
    lines = []
    for g, w in zip(gradients, problem.wrt):
        alone = {w: direction[w]}
        analytic = float(evaluate(sd_sum(g * constant(direction[w])), problem.point))
        numeric = float(_Differences(problem, [cost], alone).values[0])
        lines.append(f"    wrt {w.name}: symdiff {analytic!r}, finite differences {numeric!r}")
    return "\n".join(lines)


def check_jvp(f, wrt=None, values=None, *, order=2, rng=0, step=None, rtol=None, atol=0.0, label=None):
    """Check ``sd.jvp`` (forward mode) against finite differences, up to ``order``.

    Arguments as for :func:`check_grads`; ``f`` may have any shape, and its jvp
    is compared elementwise with the finite difference of f along a random
    tangent.  Order 2 pushes a second tangent through the jvp graph (jvp of jvp)
    and compares it with the finite difference of the first jvp.

    >>> import symdiff as sd
    >>> from symdiff.testing import check_jvp
    >>> x = sd.vector("x", 3)
    >>> check_jvp(sd.tanh(x) * x, x, {x: [0.1, -0.5, 2.0]})
    >>> check_jvp(lambda a, b: sd.exp(a) / b, values=(0.3, [1.0, 2.0]), order=3)
    """
    problem = _setup(f, wrt, values, label, step, rtol, atol, rng, need_scalar=False)
    output = problem.output
    for level in range(1, order + 1):
        direction = _directions(problem)
        tangent = jvp(output, problem.wrt, [constant(direction[w]) for w in problem.wrt])
        analytic = evaluate(tangent, problem.point)
        fd = _Differences(problem, [output], direction)
        _compare(problem, f"forward-mode derivative (order {level} of {order})", [analytic], fd,
                 ["jvp(f, wrt, u)"], direction)
        output = tangent


def check_hvp(f, wrt=None, values=None, *, modes=("rev-rev", "fwd-rev"), rng=0, step=None, rtol=None, atol=0.0,
              label=None):
    """Check ``sd.hvp`` in each of ``modes`` against finite differences of the gradient.

    Arguments as for :func:`check_grads` (a non-scalar ``f`` is reduced to
    sum(f * W)).  H v is compared, input by input, with the finite difference of
    grad f along v; when several modes are given they must also agree with each
    other to rounding.

    >>> import symdiff as sd
    >>> from symdiff.testing import check_hvp
    >>> x, y = sd.vector("x", 2), sd.scalar("y")
    >>> check_hvp(sd.sum(sd.sin(x * y)), [x, y], {x: [0.5, 1.0], y: 2.0})
    """
    problem = _setup(f, wrt, values, label, step, rtol, atol, rng, need_scalar=True)
    direction = _directions(problem)
    vectors = [constant(direction[w]) for w in problem.wrt]
    fd = _Differences(problem, grad(problem.output, problem.wrt, mode="rev"), direction)
    names = [f"H v, component {w.name}" for w in problem.wrt]
    results, largest = {}, 0.0
    for mode in modes:
        products = hvp(problem.output, problem.wrt, vectors, mode=mode)
        largest = max(largest, _largest_intermediate(products, problem.point))
        results[mode] = [np.asarray(v, dtype=np.float64) for v in evaluate(as_list(products)[0], problem.point)]
        _compare(problem, f"Hessian-vector product ({mode})", results[mode], fd, names, direction)
    first, *others = modes
    # Rounding differs between the two graphs: allow rtol, and a floor of a few
    # hundred ulps of the largest value either graph computes (H v may cancel to ~0).
    floor = _NOISE_SAFETY * problem.eps * largest
    for mode in others:
        for name, a, b in zip(names, results[first], results[mode]):
            if not np.allclose(b, a, rtol=problem.rtol, atol=floor):
                _fail(problem, f"Hessian-vector product ({mode} against {first})", name, b, a, direction,
                      f"the {mode} and {first} modes disagree", labels=(mode, first))


def check_op(op, *, order=2, rng=0, compiled=True, rtol=None, atol=0.0):
    """Run the built-in registry's checks on one op, on every sample its record gives.

    ``op`` is what ``sd.custom_op`` returned (or an ``ir.Op``).  For each sample:
    the type rule against what ``impl`` returns (also with every size unknown
    until run time); for a differentiable op, reverse mode, forward mode and
    Hessian-vector products (both modes) of sum(out * W) against finite
    differences up to ``order``, with respect to every float input; and, with
    ``compiled``, one Numba kernel computing every sample's value and gradient,
    against the reference evaluator.  Raises AssertionError (GradCheckError for
    derivatives) naming the op and the sample.

    >>> import numpy as np, symdiff as sd
    >>> cube = sd.custom_op("doc_cube", lambda x: x ** 3, elementwise=True,
    ...                     vjp=lambda g, out, x: g * 3 * x * x,
    ...                     samples=lambda rng: [((rng.normal(size=3),), {})])
    >>> check_op(cube, compiled=False)
    """
    from .ir import make_node
    from .types import TensorType

    record = getattr(op, "op", op)
    if record.samples is None:
        raise ValueError(f"op {record.name!r} has no samples: give samples=(rng) -> [(arrays, attrs), ...]")
    generator = np.random.default_rng(rng)
    to_compile, inputs, values = [], [], {}
    for k, (arrays, attrs) in enumerate(record.samples(generator)):
        label = f"op {record.name!r}, sample {k}"
        arrays = [np.asarray(a) for a in arrays]
        symbols = [tensor(f"{record.name}_{k}_{i}", a.shape, dtype_of_array(a)) for i, a in enumerate(arrays)]
        point = dict(zip(symbols, arrays))
        out = make_node(record, symbols, dict(attrs))
        value = np.asarray(evaluate(out, point))
        assert TensorType(dtype_of_array(value), value.shape) == out.type, (
            f"{label}: the type rule says {out.type!r}, impl returned {value.dtype} of shape {value.shape}")
        unknown = [tensor(s.name, (None,) * s.ndim, s.dtype) for s in symbols]
        loose = make_node(record, unknown, dict(attrs)).type
        assert loose.dtype == out.type.dtype and len(loose.shape) == value.ndim and all(
            d is None or d == v for d, v in zip(loose.shape, value.shape)), (
            f"{label}: with sizes unknown until run time the type rule says {loose!r}, impl gave {value.shape}")
        wrt = [s for s in symbols if s.type.is_float]
        outputs = [out]
        ruled = record.vjp is not None and not any(getattr(r, "missing", False) for r in record.vjp if r)
        if ruled and wrt and out.type.is_float:
            weights = constant(np.random.default_rng(k).normal(size=value.shape).astype(value.dtype))
            cost = sd_sum(out * weights)
            check_grads(cost, wrt, point, order=order, rng=rng, rtol=rtol, atol=atol, label=label)
            check_jvp(out, wrt, point, order=order, rng=rng, rtol=rtol, atol=atol, label=label)
            check_hvp(cost, wrt, point, rng=rng, rtol=rtol, atol=atol, label=label)
            outputs += grad(cost, wrt, mode="rev")
        to_compile += outputs
        inputs += symbols
        values.update(point)
    if compiled and to_compile:
        from .function import function

        got = function(inputs, to_compile)(*[values[s] for s in inputs])
        want = evaluate(to_compile, values)
        for g, w in zip(got, want):
            single = np.asarray(w).dtype == np.float32
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=(2e-5 if single else 1e-12) if rtol is None
                                       else rtol, atol=(1e-6 if single else 1e-12) if not atol else atol,
                                       err_msg=f"op {record.name!r}: compiled kernel against the reference")
