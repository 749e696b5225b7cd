"""The user's vocabulary: symbols, constants and NumPy-named functions.

Each function converts its arguments (Python numbers and NumPy arrays become
constants), promotes dtypes as NumPy 2 does, and applies a primitive from
``symdiff.ops`` or composes several.  Python scalars are "weak" (NEP 50): ``x * 2``
keeps a float32 ``x`` float32.  Composites (softmax, logsumexp, mean, clip, ...)
live here, not in the op registry, so they need no rules of their own: their
derivatives come from the primitives they are built of.
"""

from __future__ import annotations

import builtins
import inspect
import keyword
import sys
from functools import reduce

import numpy as np

from .. import ir
from ..errors import DTypeError, ShapeError
from ..ir import Expr, make_node
from ..ops import elementwise as E
from ..ops import linalg as L
from ..ops import reductions as R
from ..ops import structure as S
from ..ops.leaves import CONSTANT, SYMBOL, const, constant_value  # noqa: F401  (re-exported)
from ..types import FLOAT_DTYPES, TensorType, check_dtype, check_shape, dtype_of_array, normalize_axes, promote

# ------------------------------------------------------------------ creation


def tensor(name: str, shape, dtype="float64") -> Expr:
    """A named input of the given shape; ``None`` marks a size known only at run time.

    >>> import symdiff as sd
    >>> sd.tensor("X", (None, 64), dtype="float32")
    Expr(X : f32[?,64])
    """
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"symbol names must be Python identifiers, got {name!r}")
    return make_node(SYMBOL, (), {"name": name, "type": TensorType(check_dtype(dtype), check_shape(shape))})


def scalar(name: str, dtype="float64") -> Expr:
    """A named 0-d input.

    >>> import symdiff as sd
    >>> sd.scalar("a")
    Expr(a : f64[])
    """
    return tensor(name, (), dtype)


def scalars(names: str, dtype="float64") -> tuple:
    """Several scalars at once, from names separated by spaces or commas.

    >>> import symdiff as sd
    >>> a, b, c = sd.scalars("a b c")
    """
    return tuple(scalar(n, dtype) for n in names.replace(",", " ").split())


def vector(name: str, n=None, dtype="float64") -> Expr:
    """A named 1-d input of length ``n`` (None: any length).

    >>> import symdiff as sd
    >>> sd.vector("x", 3)
    Expr(x : f64[3])
    """
    return tensor(name, (n,), dtype)


def matrix(name: str, shape=(None, None), dtype="float64") -> Expr:
    """A named 2-d input.

    >>> import symdiff as sd
    >>> sd.matrix("W", (64, 128))
    Expr(W : f64[64,128])
    """
    shape = check_shape(shape)
    if len(shape) != 2:
        raise ShapeError(f"matrix {name!r} needs a 2-d shape, got {shape}")
    return tensor(name, shape, dtype)


def constant(value, dtype=None) -> Expr:
    """A constant array (copied, so later changes to ``value`` do not leak in).

    >>> import symdiff as sd
    >>> sd.constant([1.0, 2.0])
    Expr(%... = constant [1. 2.] : f64[2])
    """
    if isinstance(value, Expr):
        return value if dtype is None else astype(value, dtype)
    array = _as_array(value)
    return const(array, check_dtype(dtype) if dtype is not None else dtype_of_array(array))


def _as_array(value) -> np.ndarray:
    try:
        array = np.asarray(value)
    except Exception as exc:
        raise TypeError(f"expected a symdiff expression, a number or an array, got {type(value).__name__}") from exc
    if array.dtype.kind not in "biuf":
        got = f"of dtype {array.dtype}" if isinstance(value, np.ndarray) else repr(value)
        raise TypeError(f"expected a symdiff expression, a number or an array, got {type(value).__name__} {got}")
    return array


# ----------------------------------------------------------- dtype promotion


def _is_weak(value) -> bool:
    if isinstance(value, Expr):
        # x.shape[i] of a None dim stands for the Python int NumPy's x.shape[i] is, so it
        # promotes like one: X.sum() / X.shape[0] stays float32 whether the size is known or not.
        return value.op is S.DIM
    return isinstance(value, (bool, int, float)) and not isinstance(value, np.generic)


def _weak_kind(value) -> str:
    return "bool" if isinstance(value, bool) else "int64" if isinstance(value, (int, Expr)) else "float64"


def operands(*args, to_float=False) -> list:
    """Convert arguments to Exprs of one dtype, promoting as NumPy 2 does.

    Python scalars are weak: they take the dtype of the strongly typed
    operands when their kind fits (an int with float32 stays float32).
    """
    if len(args) == 2 and isinstance(args[0], Expr) and isinstance(args[1], Expr) and args[0].dtype == args[1].dtype:
        if not to_float or args[0].dtype in FLOAT_DTYPES:  # the common case, kept cheap
            return list(args)
    strong = [a if isinstance(a, Expr) else constant(a) for a in args if not _is_weak(a)]
    if strong:
        dtype = reduce(promote, (s.dtype for s in strong))
        for a in args:
            if _is_weak(a):
                kind = _weak_kind(a)
                if kind == "float64" and dtype not in FLOAT_DTYPES:
                    dtype = "float64"
                elif kind == "int64" and dtype == "bool":
                    dtype = "int64"
    else:
        dtype = reduce(promote, (_weak_kind(a) for a in args))
    if to_float and dtype not in FLOAT_DTYPES:
        dtype = "float64"
    strong_iter = iter(strong)
    out = []
    for a in args:
        if _is_weak(a):
            x = a if isinstance(a, Expr) else const(a, dtype)
        else:
            x = next(strong_iter)
        out.append(x if x.dtype == dtype else astype(x, dtype))
    return out


def as_expr(value) -> Expr:
    """An Expr for ``value`` (an Expr, a number or an array)."""
    return value if isinstance(value, Expr) else constant(value)


def _float_operand(x) -> Expr:
    (x,) = operands(x, to_float=True)
    return x


# ----------------------------------------------------------- elementwise


def _elementwise_function(name, op, summary, example, result, convert):
    """A front-end function applying ``op`` after ``convert`` (promotion), with a
    docstring made of ``summary`` and a runnable ``example`` giving ``result``."""

    def fn(*args):
        try:
            args = convert(*args)
        except TypeError as exc:  # name the function the bad argument was given to
            raise type(exc)(f"{name}: {exc}") from None
        return op(*args)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"{summary}\n\n>>> import symdiff as sd\n>>> {example}\n{result}\n"
    arg_names = "xy"[: len(inspect.signature(convert).parameters)]
    fn.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in arg_names],
        return_annotation="Expr",
    )
    return fn


def _unary_float(name, op, summary, example, result):
    return _elementwise_function(name, op, summary, example, result, lambda x: operands(x, to_float=True))


exp = _unary_float(
    "exp", E.EXP, "Elementwise e**x.",
    "sd.evaluate(sd.exp(sd.constant(0.0)), {})", "np.float64(1.0)",
)
expm1 = _unary_float(
    "expm1", E.EXPM1, "Elementwise exp(x) - 1, accurate near 0.",
    "sd.evaluate(sd.expm1(sd.constant(0.0)), {})", "np.float64(0.0)",
)
log = _unary_float(
    "log", E.LOG, "Elementwise natural logarithm.",
    "sd.evaluate(sd.log(sd.constant(1.0)), {})", "np.float64(0.0)",
)
log1p = _unary_float(
    "log1p", E.LOG1P, "Elementwise log(1 + x), accurate near 0.",
    "sd.evaluate(sd.log1p(sd.constant(0.0)), {})", "np.float64(0.0)",
)
sqrt = _unary_float(
    "sqrt", E.SQRT, "Elementwise square root.",
    "sd.evaluate(sd.sqrt(sd.constant(4.0)), {})", "np.float64(2.0)",
)
sin = _unary_float(
    "sin", E.SIN, "Elementwise sine.",
    "sd.evaluate(sd.sin(sd.constant(0.0)), {})", "np.float64(0.0)",
)
cos = _unary_float(
    "cos", E.COS, "Elementwise cosine.",
    "sd.evaluate(sd.cos(sd.constant(0.0)), {})", "np.float64(1.0)",
)
tan = _unary_float(
    "tan", E.TAN, "Elementwise tangent.",
    "sd.evaluate(sd.tan(sd.constant(0.0)), {})", "np.float64(0.0)",
)
tanh = _unary_float(
    "tanh", E.TANH, "Elementwise hyperbolic tangent.",
    "sd.evaluate(sd.tanh(sd.constant(0.0)), {})", "np.float64(0.0)",
)
sigmoid = _unary_float(
    "sigmoid", E.SIGMOID, "Elementwise 1 / (1 + exp(-x)), without overflow.",
    "sd.evaluate(sd.sigmoid(sd.constant(-1000.0)), {})", "np.float64(0.0)",
)
softplus = _unary_float(
    "softplus", E.SOFTPLUS, "Elementwise log(1 + exp(x)), without overflow.",
    "sd.evaluate(sd.softplus(sd.constant(1000.0)), {})", "np.float64(1000.0)",
)


def _signed(x) -> Expr:
    (x,) = operands(x)
    return astype(x, "int64") if x.dtype == "bool" else x


def negative(x) -> Expr:
    """Elementwise -x (bool is treated as int64).

    >>> import symdiff as sd
    >>> sd.evaluate(-sd.constant(2.0), {})
    np.float64(-2.0)
    """
    return E.NEG(_signed(x))


def abs(x) -> Expr:  # noqa: A001  (NumPy's name)
    """Elementwise absolute value; its derivative at 0 is 0 (sign(0)).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.abs(sd.constant(-2.0)), {})
    np.float64(2.0)
    """
    return E.ABS(_signed(x))


def sign(x) -> Expr:
    """Elementwise sign (-1, 0 or 1); no derivative flows through it.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.sign(sd.constant(-3.0)), {})
    np.float64(-1.0)
    """
    return E.SIGN(_signed(x))


def square(x) -> Expr:
    """Elementwise x * x.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.square(sd.constant(3.0)), {})
    np.float64(9.0)
    """
    (x,) = operands(x)
    return E.MUL(x, x)


def relu(x) -> Expr:
    """Elementwise max(x, 0); its derivative at 0 is 0, as in PyTorch and JAX.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.relu(sd.constant([-1.0, 2.0])), {})
    array([0., 2.])
    """
    x = _float_operand(x)
    return where(x > 0, x, 0)


def _binary(name, op, summary, example, result, to_float=False):
    return _elementwise_function(name, op, summary, example, result, lambda x, y: operands(x, y, to_float=to_float))


add = _binary(
    "add", E.ADD, "x + y, broadcasting.",
    "sd.evaluate(sd.add(1.0, 2.0), {})", "np.float64(3.0)",
)
subtract = _binary(
    "subtract", E.SUB, "x - y, broadcasting.",
    "sd.evaluate(sd.subtract(1.0, 2.0), {})", "np.float64(-1.0)",
)
multiply = _binary(
    "multiply", E.MUL, "x * y, broadcasting.",
    "sd.evaluate(sd.multiply(2.0, 3.0), {})", "np.float64(6.0)",
)
divide = _binary(
    "divide", E.DIV, "x / y (true division), broadcasting.",
    "sd.evaluate(sd.divide(1, 4), {})", "np.float64(0.25)", to_float=True,
)
power = _binary(
    "power", E.POW, "x ** y (computed in floating point), broadcasting.",
    "sd.evaluate(sd.power(2.0, 3), {})", "np.float64(8.0)", to_float=True,
)
maximum = _binary(
    "maximum", E.MAXIMUM, "Elementwise maximum; at ties each side gets half the derivative.",
    "sd.evaluate(sd.maximum(1.0, 2.0), {})", "np.float64(2.0)",
)
minimum = _binary(
    "minimum", E.MINIMUM, "Elementwise minimum; at ties each side gets half the derivative.",
    "sd.evaluate(sd.minimum(1.0, 2.0), {})", "np.float64(1.0)",
)
less = _binary(
    "less", E.LESS, "x < y as a bool node.",
    "sd.evaluate(sd.less(1.0, 2.0), {})", "np.True_",
)
less_equal = _binary(
    "less_equal", E.LESS_EQUAL, "x <= y as a bool node.",
    "sd.evaluate(sd.less_equal(2.0, 2.0), {})", "np.True_",
)
greater = _binary(
    "greater", E.GREATER, "x > y as a bool node.",
    "sd.evaluate(sd.greater(1.0, 2.0), {})", "np.False_",
)
greater_equal = _binary(
    "greater_equal", E.GREATER_EQUAL, "x >= y as a bool node.",
    "sd.evaluate(sd.greater_equal(1.0, 2.0), {})", "np.False_",
)
equal = _binary(
    "equal", E.EQUAL, "Elementwise x == y as a bool node (Expr's own == is identity).",
    "sd.evaluate(sd.equal(2.0, 2.0), {})", "np.True_",
)
not_equal = _binary(
    "not_equal", E.NOT_EQUAL, "Elementwise x != y as a bool node.",
    "sd.evaluate(sd.not_equal(2.0, 2.0), {})", "np.False_",
)


def _to_bool(x) -> Expr:
    (x,) = operands(x)
    return x if x.dtype == "bool" else E.NOT_EQUAL(x, const(0, x.dtype))


def logical_and(x, y) -> Expr:
    """Elementwise and (non-bool inputs are tested against 0).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.logical_and(True, False), {})
    np.False_
    """
    return E.LOGICAL_AND(_to_bool(x), _to_bool(y))


def logical_or(x, y) -> Expr:
    """Elementwise or (non-bool inputs are tested against 0).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.logical_or(True, False), {})
    np.True_
    """
    return E.LOGICAL_OR(_to_bool(x), _to_bool(y))


def _bool_operator(symbol, function):
    def operator(x, y=None):
        args = (x,) if y is None else (x, y)
        exprs = operands(*args)
        if exprs[0].dtype != "bool":
            raise DTypeError(
                f"{symbol} on {exprs[0].dtype} expressions: symdiff has no bitwise ops; {symbol} works on bool "
                f"expressions (comparisons), or use sd.{function.__name__}"
            )
        return function(*exprs)

    return operator


def logical_not(x) -> Expr:
    """Elementwise not (non-bool inputs are tested against 0).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.logical_not(True), {})
    np.False_
    """
    return E.LOGICAL_NOT(_to_bool(x))


# ``&``, ``|`` and ``~`` on expressions: logical on bool, refused elsewhere (NumPy's
# meaning for ints, bitwise, is not supported, so guessing would give wrong values).
and_operator = _bool_operator("&", logical_and)
or_operator = _bool_operator("|", logical_or)
invert_operator = _bool_operator("~", logical_not)


def where(condition, x, y) -> Expr:
    """``x`` where ``condition`` holds, else ``y`` (NumPy's where, broadcasting).

    The unselected side gets a zero derivative by masking, never by multiplying.
    A NaN produced inside the unselected branch's own derivative (``sqrt`` or
    ``log`` at 0, ``1/x`` at 0) still reaches the gradient, as in every
    reverse-mode system; make the branch's argument safe with a second ``where``
    (``sd.where(x > 0, sd.sqrt(sd.where(x > 0, x, 1)), 0)``).

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.where(x > 0, x, 0.0), {x: [-1.0, 2.0]})
    array([0., 2.])
    """
    if isinstance(condition, (bool, np.bool_)):
        raise TypeError(
            f"where: the condition is the Python value {condition!r}, not an expression; "
            "if you wrote x == y, use sd.equal(x, y) (== on expressions is identity)"
        )
    x, y = operands(x, y)
    return E.WHERE(_to_bool(condition), x, y)


def clip(x, a_min=None, a_max=None) -> Expr:
    """np.clip: minimum(maximum(x, a_min), a_max); either bound may be None.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.clip(sd.constant([-2.0, 0.5, 3.0]), -1, 1), {})
    array([-1. ,  0.5,  1. ])
    """
    out = as_expr(x)
    if a_min is not None:
        out = maximum(out, a_min)
    if a_max is not None:
        out = minimum(out, a_max)
    return out


def astype(x, dtype) -> Expr:
    """Convert to ``dtype`` (float64, float32, int64 or bool).

    >>> import symdiff as sd
    >>> sd.astype(sd.scalar("a"), "float32")
    Expr(%... = cast a : f32[])
    """
    x = as_expr(x)
    dtype = check_dtype(dtype)
    return x if x.dtype == dtype else E.CAST(x, dtype=dtype)


def stop_gradient(x) -> Expr:
    """The value of ``x``, through which no derivative flows.

    >>> import symdiff as sd
    >>> a = sd.scalar("a")
    >>> sd.evaluate(sd.grad(a * sd.stop_gradient(a), a), {a: 3.0})
    np.float64(3.0)
    """
    return E.STOP_GRADIENT(as_expr(x))


# -------------------------------------------------------------- reductions


def _reduce(op, x, axis, keepdims, numeric=True):
    (x,) = operands(x)
    if numeric and x.dtype == "bool":
        x = astype(x, "int64")
    return op(x, axes=normalize_axes(axis, x.ndim), keepdims=bool(keepdims))


def sum(x, axis=None, keepdims=False) -> Expr:  # noqa: A001
    """Sum over ``axis`` (int, tuple or None for all), as np.sum.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.sum(sd.constant([[1.0, 2.0], [3.0, 4.0]]), axis=0), {})
    array([4., 6.])
    """
    return _reduce(R.SUM, x, axis, keepdims)


def prod(x, axis=None, keepdims=False) -> Expr:
    """Product over ``axis``, as np.prod; its derivative is exact at zeros.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.prod(sd.constant([2.0, 3.0])), {})
    np.float64(6.0)
    """
    return _reduce(R.PROD, x, axis, keepdims)


def max(x, axis=None, keepdims=False, initial=None) -> Expr:  # noqa: A001
    """Maximum over ``axis``, as np.max; tied maxima share the derivative.

    ``initial`` (a static number, cast to x's dtype as NumPy does) takes part in
    the maximum, so an empty axis gives it instead of an error.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.max(sd.constant([1.0, 3.0, 2.0])), {})
    np.float64(3.0)
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.max(x, initial=0.0), {x: []})
    np.float64(0.0)
    """
    if initial is not None:
        return _extremum_with_initial("max", R.MAX, maximum, x, axis, keepdims, initial)
    return _reduce(R.MAX, x, axis, keepdims, numeric=False)


def min(x, axis=None, keepdims=False, initial=None) -> Expr:  # noqa: A001
    """Minimum over ``axis``, as np.min; tied minima share the derivative.

    ``initial`` (a static number, cast to x's dtype as NumPy does) takes part in
    the minimum, so an empty axis gives it instead of an error.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.min(sd.constant([1.0, 3.0, 2.0])), {})
    np.float64(1.0)
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.min(x, initial=0.0), {x: [1.0, 2.0]})
    np.float64(0.0)
    """
    if initial is not None:
        return _extremum_with_initial("min", R.MIN, minimum, x, axis, keepdims, initial)
    return _reduce(R.MIN, x, axis, keepdims, numeric=False)


def _extremum_with_initial(name, op, pairwise, x, axis, keepdims, initial) -> Expr:
    """op(x) combined with ``initial``, which also stands in for an empty axis.

    Static sizes: ``pairwise(op(x), initial)``, or ``initial`` broadcast when an axis is
    statically empty.  An axis whose size is known only at run time (maybe 0) gets one
    block of ``initial`` joined to it, so the reduction never sees an empty axis.
    """
    from ..ops.leaves import numpy_dtype
    from .ordering import _slab  # the module builds on this one

    (x,) = operands(x)
    if isinstance(initial, Expr) or np.ndim(initial) != 0:
        where = ir._user_origin()
        at = f" (at {where[0]}:{where[1]})" if where else ""
        raise TypeError(f"{name}: initial must be a static number, got {type(initial).__name__} {initial!r}{at}")
    with np.errstate(all="ignore"):  # NumPy casts initial to the array's dtype, unsafely
        init = const(np.asarray(initial).astype(numpy_dtype(x.dtype)), x.dtype)
    axes = normalize_axes(axis, x.ndim)
    sizes = [x.type.shape[a] for a in axes]
    if 0 in sizes:
        shape_ref = R.SUM(astype(x, "int64") if x.dtype == "bool" else x, axes=axes, keepdims=bool(keepdims))
        return broadcast_like(init, shape_ref)
    if None in sizes:
        for a in axes:
            if x.type.shape[a] is None:
                x = S.CONCATENATE(x, _slab("initial", init, x, a), axis=a)
        return op(x, axes=axes, keepdims=bool(keepdims))
    return pairwise(op(x, axes=axes, keepdims=bool(keepdims)), init)


def _count(x: Expr, axes) -> Expr | int:
    """The number of elements over ``axes``: an int when static, else a node."""
    static = [x.type.shape[a] for a in axes]
    if None not in static:
        return int(np.prod(static, dtype=np.int64))
    factors = [dim(x, a) for a in axes if x.type.shape[a] is None]
    known = int(np.prod([d for d in static if d is not None], dtype=np.int64))
    return reduce(multiply, factors, known)


def mean(x, axis=None, keepdims=False) -> Expr:
    """Arithmetic mean over ``axis``, as np.mean (sizes may be known only at run time).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.mean(sd.constant([1.0, 2.0, 6.0])), {})
    np.float64(3.0)
    """
    x = _float_operand(x)
    axes = normalize_axes(axis, x.ndim)
    count = _count(x, axes)
    total = R.SUM(x, axes=axes, keepdims=bool(keepdims))
    return total / (count if isinstance(count, int) else astype(count, x.dtype))


def _shifted(x, axes):
    """``(x - shift, shift)`` with ``shift`` the maximum over ``axes`` (kept as size 1), or 0
    where that maximum is not finite (an all -inf slice, or inf/nan: no shift).

    The shift is NOT wrapped in stop_gradient, although it cancels exactly in the value:
    differentiating through it makes the tangent of ``x - shift`` exactly 0 at the
    maximum, so the derivatives of logsumexp, log_softmax and softmax keep relative
    accuracy.  With a constant shift the Hessian's diagonal at the dominant element is
    p * (1 - p) with p rounded to 1, exactly 0 for logsumexp([30, -30]) (true 8.8e-27);
    with this one it is p * sum(other p), with nothing cancelled.
    """
    # over an empty axis the maximum is -inf (no entry gets a share of its derivative), the shift 0
    # and the sum of exponentials 0: logsumexp is -inf, as SciPy's, softmax empty
    top = R.MAX(x, axes=axes, keepdims=True, **({"initial": -np.inf} if axes else {}))
    shift = where(abs(stop_gradient(top)) < np.inf, top, 0)
    return x - shift, shift


def _log_sum_exp_centred(centred, axes):
    """log(sum(exp(centred))) for ``centred`` from ``_shifted``, as log1p of the sum minus 1.

    Where the shift is the maximum, the maximum's term is exactly exp(0) = 1, so
    sum - 1 is the sum of the other terms (plus any tied maxima), computed without
    subtracting anything: log_softmax of the dominant logit keeps relative accuracy
    (-9.357623e-14 at [0, -30], where log(sum) gives -9.348e-14).  Where the shift is 0
    (a slice with inf or nan, or all -inf) the same formula gives inf, nan or -inf.
    """
    at_top = equal(centred, 0)
    others = R.SUM(where(at_top, 0, exp(centred)), axes=axes, keepdims=True)
    # exp(centred) is exactly 1 at the top, but written out so that every tied maximum
    # keeps its derivative: counting ties as constants made the Hessian at tied logits
    # (zero-initialised weights) exactly 0.
    tied = R.SUM(where(at_top, exp(centred), 0), axes=axes, keepdims=True) - 1
    return log1p(others + tied)


def logsumexp(x, axis=None, keepdims=False) -> Expr:
    """log(sum(exp(x))) over ``axis`` without overflow (scipy.special.logsumexp).

    Computed as ``max + log(sum(exp(x - max)))``; the derivatives keep relative
    accuracy at large logits (see ``_shifted``).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.logsumexp(sd.constant([1000.0, 1000.0])), {})
    np.float64(1000.6931471805599)
    """
    x = _float_operand(x)
    axes = normalize_axes(axis, x.ndim)
    centred, shift = _shifted(x, axes)
    out = _log_sum_exp_centred(centred, axes) + shift
    return out if keepdims or not axes else S.SQUEEZE(out, axes=axes)


def log_softmax(x, axis=-1) -> Expr:
    """x - logsumexp(x, axis, keepdims=True), computed as ``(x - max) - log(sum(exp(x - max)))``.

    The maximum is subtracted before anything is added to it, so large logits do not
    cancel: float32 ``log_softmax([1e7, 1e7])`` is ``[-0.693, -0.693]``; and the log of
    the sum is a log1p, so the dominant entry keeps relative accuracy too.

    >>> import symdiff as sd
    >>> sd.evaluate(sd.log_softmax(sd.constant([0.0, 0.0])), {})
    array([-0.69314718, -0.69314718])
    """
    x = _float_operand(x)
    axes = normalize_axes(axis, x.ndim)
    centred, _ = _shifted(x, axes)
    return centred - _log_sum_exp_centred(centred, axes)


def softmax(x, axis=-1) -> Expr:
    """exp(x - max) / sum(exp(x - max)) along ``axis``: sums to 1, no overflow.

    Each probability is one exp and one division of exactly computed terms, so it
    has relative accuracy even far in the tail (exp(log_softmax) would lose
    ``|log p|`` ulps).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.softmax(sd.constant([1000.0, 1000.0])), {})
    array([0.5, 0.5])
    """
    x = _float_operand(x)
    axes = normalize_axes(axis, x.ndim)
    centred, _ = _shifted(x, axes)
    weights = exp(centred)
    return weights / R.SUM(weights, axes=axes, keepdims=True)


# ---------------------------------------------------------------- linalg


def matmul(a, b) -> Expr:
    """np.matmul (``@``): 1-d operands are promoted, batch dims broadcast.

    >>> import symdiff as sd
    >>> W, x = sd.matrix("W", (2, 3)), sd.vector("x", 3)
    >>> (W @ x).type
    f64[2]
    """
    return L.MATMUL(*operands(a, b))


def dot(a, b) -> Expr:
    """np.dot for operands of at most 2 dimensions (scalars multiply).

    >>> import symdiff as sd
    >>> sd.evaluate(sd.dot(sd.constant([1.0, 2.0]), sd.constant([3.0, 4.0])), {})
    np.float64(11.0)
    """
    a, b = operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    if a.ndim > 2 or b.ndim > 2:
        raise ShapeError(f"dot: {a.ndim}-d and {b.ndim}-d operands; for more than 2 dimensions use matmul")
    return L.MATMUL(a, b)


# ----------------------------------------------------------------- shapes


def dim(x, axis: int) -> Expr:
    """The run-time size of ``axis`` as an int64 scalar node.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate(sd.dim(x, 0), {x: [1.0, 2.0, 3.0]})
    np.int64(3)
    """
    x = as_expr(x)
    (axis,) = normalize_axes(axis, x.ndim)
    return S.DIM(x, axis=axis)


def transpose(x, axes=None) -> Expr:
    """np.transpose; ``axes=None`` reverses the axes.

    >>> import symdiff as sd
    >>> sd.transpose(sd.matrix("W", (2, 3))).type
    f64[3,2]
    """
    x = as_expr(x)
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    else:
        axes = tuple(_static_int(a, "a transpose axis") for a in axes)
        if builtins.any(not -x.ndim <= a < x.ndim for a in axes):
            raise ShapeError(f"transpose: axes {axes} out of range for {x.ndim}-d input {x.type!r}")
        axes = tuple(a % x.ndim for a in axes)
    return x if axes == tuple(range(x.ndim)) else S.TRANSPOSE(x, axes=axes)


def reshape(x, shape) -> Expr:
    """np.reshape with a static shape (one -1 allowed).

    >>> import symdiff as sd
    >>> sd.reshape(sd.vector("x", 6), (2, -1)).type
    f64[2,3]
    """
    x = as_expr(x)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    shape = tuple(_static_int(d, "a reshape dimension") for d in shape)
    return S.RESHAPE(x, shape=shape)


def broadcast_to(x, shape) -> Expr:
    """np.broadcast_to with a static shape.

    >>> import symdiff as sd
    >>> sd.broadcast_to(sd.scalar("a"), (2, 3)).type
    f64[2,3]
    """
    shape = check_shape(shape)
    if None in shape:
        raise ShapeError(f"broadcast_to needs a static shape, got {shape}")
    return S.BROADCAST_TO(as_expr(x), shape=shape)


def broadcast_like(x, ref) -> Expr:
    """Broadcast ``x`` to the (run-time) shape of ``ref``; ref's values are not used.

    >>> import symdiff as sd
    >>> sd.broadcast_like(sd.scalar("a"), sd.matrix("W")).type
    f64[?,?]
    """
    x, ref = as_expr(x), as_expr(ref)
    return x if x.type.shape == ref.type.shape else S.BROADCAST_LIKE(x, ref)


def expand_dims(x, axis) -> Expr:
    """np.expand_dims: insert size-1 axes at ``axis`` (int or tuple).

    >>> import symdiff as sd
    >>> sd.expand_dims(sd.vector("x", 3), 0).type
    f64[1,3]
    """
    x = as_expr(x)
    count = 1 if isinstance(axis, (int, np.integer)) else len(axis)
    return S.EXPAND_DIMS(x, axes=normalize_axes(axis, x.ndim + count))


def squeeze(x, axis=None) -> Expr:
    """np.squeeze: remove axes whose size is statically 1 (all of them if None).

    >>> import symdiff as sd
    >>> sd.squeeze(sd.tensor("x", (1, 3, 1))).type
    f64[3]
    """
    x = as_expr(x)
    axes = tuple(a for a, d in enumerate(x.type.shape) if d == 1) if axis is None else normalize_axes(axis, x.ndim)
    return S.SQUEEZE(x, axes=axes) if axes else x


def concatenate(arrays, axis=0) -> Expr:
    """np.concatenate along ``axis``.

    >>> import symdiff as sd
    >>> sd.concatenate([sd.vector("x", 2), sd.vector("y", 3)]).type
    f64[5]
    """
    xs = operands(*_sequence_of_arrays("concatenate", arrays))
    (axis,) = normalize_axes(axis, xs[0].ndim)
    return S.CONCATENATE(*xs, axis=axis)


def _sequence_of_arrays(name, arrays) -> list:
    if isinstance(arrays, Expr) or not isinstance(arrays, (list, tuple)) or not arrays:
        raise TypeError(f"{name} takes a non-empty list or tuple of expressions, got {type(arrays).__name__}")
    return list(arrays)


def stack(arrays, axis=0) -> Expr:
    """np.stack: join along a new axis.

    >>> import symdiff as sd
    >>> sd.stack(sd.scalars("a b c")).type
    f64[3]
    """
    xs = operands(*_sequence_of_arrays("stack", arrays))
    (axis,) = normalize_axes(axis, xs[0].ndim + 1)
    return S.CONCATENATE(*[S.EXPAND_DIMS(x, axes=(axis,)) for x in xs], axis=axis)


def _static_int(value, what):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    raise TypeError(
        f"{what} must be a static int; symdiff supports basic indexing (ints, slices, "
        f"None and ...), got {type(value).__name__} {value!r}"
    )


def getitem(x: Expr, index) -> Expr:
    """NumPy indexing: static ints, slices (negative, stepped), None and ``...`` are basic
    indexing (views); index arrays (NumPy integer arrays or lists, int64 expressions,
    constant boolean masks) are NumPy's advanced indexing (see ``symdiff.frontend.indexing``).

    >>> import symdiff as sd
    >>> x = sd.vector("x", 5)
    >>> x[1:].type, x[::-2].type, x[None, -1].type
    (f64[4], f64[3], f64[1])
    >>> k = sd.vector("k", dtype="int64")
    >>> x[k].type, x[[0, -1]].type
    (f64[?], f64[2])
    """
    from . import indexing as _indexing  # the module builds on this one

    items = list(index) if isinstance(index, tuple) else [index]
    if builtins.any(_indexing.is_advanced(item) for item in items):  # index arrays, masks: a gather
        return _indexing.advanced_getitem(x, index)
    for item in items:  # reject arrays, lists and Exprs before anything compares them
        if item is not None and item is not Ellipsis and not isinstance(item, slice):
            _static_int(item, "an index")
    if builtins.sum(item is Ellipsis for item in items) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    consumed = builtins.sum(1 for item in items if item is not None and item is not Ellipsis)
    if consumed > x.ndim:
        raise IndexError(f"too many indices: {consumed} for a {x.ndim}-d expression of type {x.type!r}")
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at:at + 1] = [slice(None)] * (x.ndim - consumed)
    else:
        items += [slice(None)] * (x.ndim - consumed)

    entries, squeeze_axes, new_axes = [], [], []
    out_axis = 0  # position in the result after squeezing
    for item in items:
        if item is None:
            new_axes.append(out_axis)
            out_axis += 1
        elif isinstance(item, slice):
            parts = tuple(None if p is None else _static_int(p, "a slice bound") for p in (item.start, item.stop, item.step))
            entries.append(parts[:2] + (1 if parts[2] is None else parts[2],))
            out_axis += 1
        else:
            entry, axis = _static_int(item, "an index"), len(entries)
            size = x.type.shape[axis]
            if size is not None and not -size <= entry < size:
                raise IndexError(f"index {entry} is out of bounds for axis {axis} with size {size} of {x.type!r}")
            entries.append(entry)
            squeeze_axes.append(axis)
    out = x
    if any(e != (None, None, 1) for e in entries):
        out = S.SLICE(out, index=tuple(entries))
    if squeeze_axes:
        out = S.SQUEEZE(out, axes=tuple(squeeze_axes))
    if new_axes:
        out = S.EXPAND_DIMS(out, axes=tuple(new_axes))
    return out


ir._frontend = sys.modules[__name__]
