"""The NumPy reference evaluator: the oracle every backend is tested against.

It runs each node's ``impl`` in topological order and checks every value against
the node's static type, so a size that disagrees at run time is reported at the
node that first sees it, with the user's file and line, instead of being
silently broadcast.
"""

from __future__ import annotations

import numpy as np

from .errors import IndexOutOfBoundsError, InputError, InputTypeError, ShapeError
from .ir import Expr, as_list, toposort
from .ops.leaves import numpy_dtype
from .types import TensorType, fmt_shape


def bind_inputs(symbols: list, values) -> dict:
    """Check user values against the symbols' types; {symbol id: read-only array}.

    ``values`` maps symbols (or their names) to numbers or arrays, accepted by the
    casting policy of :func:`coerce_input`.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> bind_inputs([x], {"x": [1, 2]})[x.id]
    array([1., 2.])
    """
    values = values or {}
    by_name: dict[str, Expr] = {}
    for sym in symbols:
        other = by_name.setdefault(sym.name, sym)
        if other is not sym:
            raise InputError(
                f"two different symbols are named {sym.name!r}: {other.type!r} and {sym.type!r}; "
                "give them different names"
            )
    given = {}
    for key, value in values.items():
        if isinstance(key, Expr):
            if not key.is_symbol:
                raise InputError(f"values can only be given for symbols, not for {key!r}")
            given[key.id] = value
        elif isinstance(key, str):
            if key in by_name:
                given[by_name[key].id] = value
        else:
            raise InputError(f"input keys must be symbols or symbol names, got {type(key).__name__} {key!r}")
    bound = {}
    for sym in symbols:
        if sym.id not in given:
            raise InputError(f"missing value for symbol {sym.name!r} of type {sym.type!r}")
        bound[sym.id] = coerce_input(sym.name, sym.type, given[sym.id])
    return bound


# Kinds a Python number (or a list of them) may have for each symbol dtype: Python
# numbers carry no precision of their own, so a float list is fine for float32.
_WEAK_KINDS = {"bool": "b", "int64": "biu", "float32": "biuf", "float64": "biuf"}
_INT64 = np.iinfo(np.int64)


def is_python_data(value) -> bool:
    """Python numbers and lists/tuples of them: "weak" values, whose dtype NumPy guesses."""
    return isinstance(value, (bool, int, float, list, tuple)) and not isinstance(value, np.generic)


def _weak_array(name: str, want: TensorType, value) -> np.ndarray:
    """A Python number or list as an array of ``want``'s dtype: any value of a kind the
    dtype holds is accepted (rounding a float or a large int is fine), but never one
    the dtype cannot hold (an int outside int64, a float that overflows float32),
    which NumPy would wrap or turn into inf without a word."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # ragged lists
        array = None
    if want.dtype == "int64" and (array is None or array.dtype.kind in "fuO"):
        _check_python_ints_fit(name, want, value)  # NumPy turns [1, 2**63] into float64
    if array is not None and array.dtype.kind in "biuf":
        if array.dtype.kind not in _WEAK_KINDS[want.dtype]:
            raise InputTypeError(
                f"input {name!r} has type {want!r} but the value's dtype is {array.dtype} (from a Python "
                f"{type(value).__name__}), which does not cast safely to {want.dtype}; convert it explicitly "
                f"(e.g. .astype({want.dtype!r}))"
            )
    if want.dtype in ("float32", "float64"):
        try:  # Python ints beyond uint64 (an object array) still convert, unless they overflow float64
            wide = np.asarray(value, dtype=np.float64) if array is None or array.dtype.kind == "O" else array
        except OverflowError:
            raise InputTypeError(f"input {name!r} of type {want!r}: a Python int in the value is too large "
                                 "for float64") from None
        except (ValueError, TypeError):
            wide = None
        if wide is not None and wide.dtype.kind in "biuf":
            if want.dtype == "float32" and wide.dtype.kind == "f":
                with np.errstate(over="ignore"):
                    narrow = wide.astype(np.float32)
                overflow = np.isfinite(wide) & ~np.isfinite(narrow)
                if np.any(overflow):
                    raise InputTypeError(f"input {name!r} of type {want!r}: the value {_largest(wide[overflow])} "
                                         "overflows float32 (at most 3.4028235e+38)")
            return wide
    if array is None or array.dtype.kind not in "biuf":
        got = type(value).__name__ if array is None else f"{type(value).__name__} of dtype {array.dtype}"
        raise InputTypeError(f"input {name!r} of type {want!r}: expected a number or a numeric array, got {got}")
    return array


def _check_python_ints_fit(name: str, want: TensorType, value):
    """An int64 input given Python ints: each must fit int64 (NumPy would wrap or round)."""
    try:
        items = np.array(value, dtype=object).ravel().tolist()
    except ValueError:  # ragged: reported by the caller
        return
    for item in items:
        if isinstance(item, int) and not _INT64.min <= item <= _INT64.max:
            raise InputTypeError(f"input {name!r} of type {want!r}: the value {item} does not fit int64 "
                                 f"(from {_INT64.min} to {_INT64.max})")


def _largest(array: np.ndarray):
    flat = np.asarray(array).ravel()
    return flat[np.argmax(np.abs(flat.astype(np.float64)))].item()


def coerce_input(name: str, want: TensorType, value) -> np.ndarray:
    """A read-only array of ``want``'s dtype for ``value``, or a clear error.

    The casting policy, the same for the NumPy and Numba backends: a NumPy array or
    scalar is accepted when NumPy casts its dtype to ``want``'s safely (int32 or
    float32 for float64; not float64 for float32, not uint64 for int64).  Python
    numbers, and lists of them, are accepted for any dtype of their kind or wider (an
    int for float32, a float for float32, rounded), as long as the dtype can hold the
    value: an int must fit int64 for an int64 input, and nothing may overflow to inf.

    >>> coerce_input("x", TensorType("float32", (2,)), [1.0, 2.0])
    array([1., 2.], dtype=float32)
    >>> coerce_input("k", TensorType("int64", ()), 2**64 - 1)
    Traceback (most recent call last):
    ...
    symdiff.errors.InputTypeError: input 'k' of type i64[]: the value 18446744073709551615 does not fit int64 ...
    """
    if isinstance(value, Expr):
        raise InputTypeError(f"input {name!r}: expected a number or an array, got the expression {value!r}")
    if is_python_data(value):
        array = _weak_array(name, want, value)
    else:
        try:
            array = np.asarray(value)
        except Exception:
            array = None
        if array is None or array.dtype.kind not in "biuf":
            got = type(value).__name__ if array is None else f"{type(value).__name__} of dtype {array.dtype}"
            raise InputTypeError(f"input {name!r} of type {want!r}: expected a number or a numeric array, got {got}")
        if not np.can_cast(array.dtype, numpy_dtype(want.dtype), "safe"):
            raise InputTypeError(
                f"input {name!r} has type {want!r} but the value's dtype is {array.dtype}, which does not cast "
                f"safely to {want.dtype}; convert it explicitly (e.g. .astype({want.dtype!r}))"
            )
    shape = array.shape
    if len(shape) != len(want.shape) or any(w is not None and w != s for w, s in zip(want.shape, shape)):
        raise ShapeError(f"input {name!r} has type {want!r} but the value has shape {fmt_shape(shape)}")
    array = array.astype(numpy_dtype(want.dtype), copy=False).view()
    array.flags.writeable = False  # an accidental in-place op must fail, not change user data
    return array


def _check_broadcast(node: Expr, args: list):
    """Static broadcasting at run time: an input dim that is not statically 1
    must have exactly the size of the result along that axis."""
    ndim = node.ndim
    sizes: dict[int, int] = {}
    for x, value in zip(node.inputs, args):
        offset = ndim - x.ndim
        for axis, static in enumerate(x.type.shape):
            if static != 1:
                size = sizes.setdefault(offset + axis, value.shape[axis])
                if size != value.shape[axis]:
                    _runtime_shape_error(node, args, "sizes differ along an axis where no input is statically 1 "
                                         "(a None dimension never broadcasts)")


# Ops that broadcast some inputs to their result without being elementwise, and
# how many trailing axes of each input take no part in it (matmul's matrix axes).
_STRETCHING = {"broadcast_to": (0,), "broadcast_like": (0, None), "matmul": (2, 2)}


def _check_not_stretched(node: Expr, args: list, out: np.ndarray):
    """A None input dimension never broadcasts: it must have the result's size."""
    cores = _STRETCHING[node.op.name]
    batches = [np.shape(v)[:max(np.ndim(v) - core, 0)] for v, core in zip(args, cores) if core is not None]
    out_batch = np.broadcast_shapes(*batches) if node.op.name == "matmul" else out.shape
    for x, value, core in zip(node.inputs, args, cores):
        if core is None or x.ndim <= core:
            continue
        batch = x.type.shape[:x.ndim - core]
        offset = len(out_batch) - len(batch)
        for axis, static in enumerate(batch):
            if static is None and value.shape[axis] != out_batch[offset + axis]:
                _runtime_shape_error(node, args, "an input dimension declared None was broadcast "
                                     "(a None dimension never broadcasts)")


def _runtime_shape_error(node: Expr, args: list, why: str):
    """Raise the ShapeError for ``node``; it carries ``node``, ``reason`` and ``shapes``
    so a caller (the command line) can say where in its own terms."""
    shapes = ", ".join(f"{fmt_shape(np.shape(v))} (declared {fmt_shape(x.type.shape)})"
                       for x, v in zip(node.inputs, args))
    at = f" at {node.where()}" if node.origin else ""
    error = ShapeError(f"{node.op.name}{at}: {why}; input shapes {shapes}")
    error.node, error.reason, error.shapes = node, why, shapes
    raise error


def _impl_failure(node: Expr, args: list, exc: Exception) -> str:
    """Why ``node``'s NumPy implementation refused these values, in the op's terms
    rather than NumPy's (its gufunc signatures and reduction jargon)."""
    name = node.op.name
    if name == "matmul" and len(args) == 2:
        a, b = (np.shape(v) for v in args)
        inner_a = a[-1] if a else None
        inner_b = (b[-2] if len(b) > 1 else b[0]) if b else None
        if inner_a is not None and inner_b is not None and inner_a != inner_b:
            return f"the contracted sizes differ: {inner_a} (last axis of the left operand) != {inner_b}"
    if node.op.kind == "reduction" and args:
        axes = dict(node.attrs).get("axes", ())
        empty = [a for a in axes if a < np.ndim(args[0]) and np.shape(args[0])[a] == 0]
        if empty:
            return (f"{name} over an empty axis (axis {empty[0]} has size 0) has no value"
                    + (f"; give a start value ({name}(..., initial=...))" if name in ("max", "min") else ""))
    return str(exc)


def run(nodes: list, values: dict) -> dict:
    """Evaluate ``nodes`` (topologically sorted) given {id: array} for the symbols."""
    with np.errstate(all="ignore"):  # IEEE results (inf, nan) are values, not errors
        for node in nodes:
            if node.id in values:
                continue
            if node.is_constant:
                values[node.id] = node.params["value"].array
                continue
            args = [values[x.id] for x in node.inputs]
            if node.op.kind == "elementwise" and len(args) > 1:
                _check_broadcast(node, args)
            try:
                out = node.op.impl(*args, **node.params)
            except IndexOutOfBoundsError as exc:  # an index value out of range: name the node, keep the type
                raise IndexOutOfBoundsError(f"{node.op.name}{' at ' + node.where() if node.origin else ''}: {exc}") \
                    from None
            except np.linalg.LinAlgError as exc:  # a singular or indefinite matrix: NumPy's class, named
                raise np.linalg.LinAlgError(f"{node.op.name}{' at ' + node.where() if node.origin else ''}: {exc}") \
                    from None
            except (IndexError, ValueError) as exc:
                if getattr(exc, "sd_complete", False):  # names the node at fault already (check_sizes, a loop's step)
                    raise
                _runtime_shape_error(node, args, _impl_failure(node, args, exc))
            out = np.asarray(out)
            if node.op.name in _STRETCHING:
                _check_not_stretched(node, args, out)
            want = numpy_dtype(node.type.dtype)
            if out.dtype != want:
                out = out.astype(want)
            static = node.type.shape
            if out.ndim != len(static) or any(d is not None and d != s for d, s in zip(static, out.shape)):
                _runtime_shape_error(node, args, f"result has shape {fmt_shape(out.shape)}, "
                                     f"expected {fmt_shape(static)}")
            values[node.id] = out
    return values


def export(value: np.ndarray):
    """0-d results as NumPy scalars; arrays never alias inputs or constants."""
    if value.ndim == 0:
        return value[()]
    if value.base is not None or not value.flags.writeable:
        return np.array(value)
    return value


def evaluate(outputs, inputs=None, sparse_format="auto"):
    """Evaluate ``outputs`` with NumPy, given ``{symbol or name: value}``.

    One Expr gives one value; a list gives a list.  0-d results are NumPy
    scalars.  Input arrays are never modified, and results never alias them.  A
    sparse derivative (``sd.hessian(..., sparse=True)``) gives its matrix, in
    ``sparse_format`` as ``sd.function`` returns it.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> sd.evaluate([sd.sum(x), x * 2], {x: [1.0, 2.0]})
    [np.float64(3.0), array([2., 4.])]
    >>> y = sd.vector("y", 3)
    >>> sd.evaluate(sd.hessian(sd.sum(y ** 3), y, sparse=True), {y: [1.0, 2.0, 3.0]}, sparse_format="dense")
    array([[ 6.,  0.,  0.],
           [ 0., 12.,  0.],
           [ 0.,  0., 18.]])
    """
    from .function import _sparse_outputs  # function.py imports this module

    outputs, sparse = _sparse_outputs(outputs, sparse_format)
    if sparse:
        results = evaluate(outputs, inputs)
        if None in sparse:
            return sparse[None].assemble(results, format=sparse_format)
        return [sparse[k].assemble(r, format=sparse_format) if k in sparse else r for k, r in enumerate(results)]
    outs, single = as_list(outputs)
    nodes = toposort(outs)
    values = bind_inputs([n for n in nodes if n.is_symbol], inputs)
    run(nodes, values)
    results, seen = [], set()
    for o in outs:
        raw = values[o.id]
        value = export(raw)
        if id(raw) in seen and isinstance(value, np.ndarray):
            value = value.copy()  # one array reached twice (a repeated output, stop_gradient): never alias
        seen.add(id(raw))
        results.append(value)
    return results[0] if single else results
