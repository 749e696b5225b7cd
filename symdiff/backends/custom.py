"""Lowering of users' ops (``sd.custom_op``; see ``symdiff.custom``).

A kernel calls a user's function through a module-level name its source defines,
``_sd_numba_<op> = user_function("<op>", "<code hash>", "numba")`` (or ``_sd_impl_<op>_<dtype>``): the hash makes the
kernel's cache key change when the user's code changes, and a kernel built for other
code refuses to load rather than run stale code.  Elementwise ops with a ``numba=``
scalar function are fused into loops like built-in ones (their record's
``scalar_code`` calls the jitted function); any other user op is one call per
evaluation on whole arrays: the ``numba=`` array function with a preallocated
output, or, without one, ``impl`` from an object-mode block.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np

from ..custom import CUSTOM_OPS, CustomOpError, CustomOpWarning
from ..errors import user_stacklevel
from ..ir import Expr
from .lowering import NUMBA_SCALAR, Value, finishing_pass, lowers

_JITTED: dict = {}  # (op name, code hash) -> the Numba dispatcher of its numba= function
_WARNED: set = set()  # (op name, how its impl is called) already warned about
_IMPORT = "from symdiff.backends.custom import user_function as _sd_user_function"


def user_function(name: str, code_hash: str, mode: str):
    """The function a kernel calls for custom op ``name``: its jitted ``numba=``
    function (mode "numba") or its checked ``impl`` (mode "impl:<result dtype>")."""
    record = CUSTOM_OPS.get(name)
    if record is None:
        raise CustomOpError(f"a compiled kernel calls custom op {name!r}, which is not registered in this process "
                            f"(run the sd.custom_op call that defines it first)")
    if record.code_hash != code_hash:
        raise CustomOpError(f"a compiled kernel was built for other code of custom op {name!r}; build the "
                            f"function again")
    if mode.startswith("impl:"):
        return _checked_call(record, mode.partition(":")[2])
    return _jitted(record)


def warn_once(name: str, how: str, cost: str):
    """One CustomOpWarning per op and calling path, pointing at the user's line."""
    if (name, how) in _WARNED:
        return
    _WARNED.add((name, how))
    warnings.warn(f"custom op {name!r} has no numba= implementation: {how} ({cost} per call plus NumPy's own "
                  f"time)", CustomOpWarning, stacklevel=user_stacklevel())


def attribute_code(name: str, key: str, value) -> str:
    """Source text for an attribute value in generated code (kernels import math and np),
    or a CustomOpError naming the op and attribute."""
    kind = type(value)
    if kind in (bool, int, str, type(None)):
        return repr(value)
    if kind is float:
        if math.isnan(value):
            return "math.nan"
        return repr(value) if math.isfinite(value) else ("math.inf" if value > 0 else "-math.inf")
    if kind in (np.bool_, np.int64, np.int32, np.float64, np.float32):
        return f"np.{kind.__name__}({attribute_code(name, key, value.item())})"
    if kind is tuple:
        return "(" + "".join(attribute_code(name, key, v) + ", " for v in value) + ")"
    raise CustomOpError(f"custom op {name!r}: attribute {key}={value!r} cannot be written into compiled code "
                        f"(use numbers, strings, bools, None or tuples of them; or pass it as an input)")


def _checked_call(record, dtype: str):
    """The user's impl, its result checked against the dtype and the run-time shape the
    kernel expects (a wrong one would be read out of bounds), without the reference
    evaluator's full type rule.  The usual result (a new C-contiguous array of the right
    dtype and shape) passes a few identity and tuple tests; anything else takes
    ``checked_result``.  The object-mode block around the call costs 1.5-2.6 us by itself
    (benchmarks/numba_floor_probe.py), so every test here counts."""
    impl, name = record.impl, record.op.name
    expected = np.dtype(dtype)

    def call(shape, *arrays, **attrs):
        views = tuple(read_only(a) if type(a) is np.ndarray else a for a in arrays)  # impl must not write them
        try:
            out = impl(*views, **attrs)
        except BaseException as exc:
            raise users_error(name, exc)
        if (type(out) is np.ndarray and out.base is None and out.dtype is expected and out.shape == shape
                and out.flags.carray and sys.getrefcount(out) <= 2):
            return out  # a new array that owns its data and that impl keeps no reference to: the usual case
        return checked_result(name, expected, shape, out, arrays)

    return call


def checked_result(name: str, expected, shape: tuple, out, arrays) -> np.ndarray:
    """``out`` (what custom op ``name``'s impl returned for ``arrays``) as a new C-contiguous
    array of dtype ``expected`` and shape ``shape``, or a CustomOpError: NumPy's conversions,
    and a copy of a result that shares memory with an input (a compiled output must not
    alias the user's array, as the reference evaluator's does not)."""
    kept = type(out) is np.ndarray and sys.getrefcount(out) > 3  # (out, this frame's argument, getrefcount's)
    out = np.asarray(out)
    if out.dtype != expected or len(out.shape) != len(shape) or any(
            want not in (-1, got) for got, want in zip(out.shape, shape)):  # -1: a size only the result knows
        rule = "(" + "".join(("?" if want == -1 else str(want)) + ", " for want in shape).rstrip(", ") + \
            ("," if len(shape) == 1 else "") + ")"
        raise CustomOpError(f"custom op {name!r}: impl returned {out.dtype} of shape {out.shape}, but its type "
                            f"rule says {expected} of shape {rule}")
    if kept or out.base is not None or not out.flags.writeable:
        return np.array(out, order="C")  # a view (of an input or a buffer impl keeps), kept, or read-only
    return out if out.flags.c_contiguous else np.ascontiguousarray(out)


def read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array``: what a user's impl is given."""
    view = array.view()
    view.flags.writeable = False
    return view


def users_error(name: str, error: BaseException) -> BaseException:
    """``error`` raised by custom op ``name``'s impl, marked so that the call wrapper lets it
    through unchanged instead of retrying the call (``NumbaFunction._slow_call``).  Writing to
    a read-only argument becomes a CustomOpError naming the op."""
    if isinstance(error, ValueError) and "read-only" in str(error):
        error = CustomOpError(f"custom op {name!r}: its impl writes to one of its inputs ({error}); impl must "
                              f"return a new array")
    try:
        error._sd_users_error = True
    except AttributeError:  # an exception type without a __dict__
        pass
    return error


def _jitted(record):
    key = (record.op.name, record.code_hash)
    if key not in _JITTED:
        from numba import njit

        fn = record.numba
        if not hasattr(fn, "py_func") and not hasattr(fn, "__code__"):  # a builtin such as math.sin
            names = ", ".join(f"x{k}" for k in range(len(record.op.vjp)))
            namespace = {"fn": fn}
            exec(f"def call({names}):\n    return fn({names})\n", namespace)
            fn = namespace["call"]
        _JITTED[key] = fn if hasattr(fn, "py_func") else njit(nogil=True, error_model="numpy")(fn)
    return _JITTED[key]


def _define(L, node: Expr, mode: str) -> str:
    """The kernel-level name of ``node``'s user function (defined once per kernel)."""
    record = CUSTOM_OPS[node.op.name]
    if mode == "impl":  # one checked call per result dtype
        mode = f"impl:{node.dtype}"
        name = f"_sd_impl_{node.op.name}_{node.dtype}"
    else:
        name = f"_sd_numba_{node.op.name}"
    L.module_lines.setdefault("_sd_user_function", _IMPORT)
    L.module_lines.setdefault(name, f"{name} = _sd_user_function({node.op.name!r}, {record.code_hash!r}, {mode!r})")
    return name


def _compile_check(node: Expr, signature: tuple, what: str):
    """Compile the user's numba= function now (with the node's attributes, by keyword, in
    the function's parameter order), so a function that does not compile is an error
    naming the op and Numba's reason instead of an error deep in the kernel's compilation."""
    import inspect

    from numba import typeof
    from numba.core.errors import NumbaError

    record = CUSTOM_OPS[node.op.name]
    dispatcher = _jitted(record)
    rest = list(inspect.signature(dispatcher.py_func).parameters.values())[len(signature):]
    unknown = sorted(set(node.params) - {p.name for p in rest})
    if unknown:
        raise CustomOpError(f"custom op {node.op.name!r}: its numba= {what} has no parameter for attribute(s) "
                            f"{unknown}")
    try:  # the attributes given, and the defaults of the parameters not given
        signature += tuple(typeof(node.params[p.name] if p.name in node.params else p.default) for p in rest
                           if p.name in node.params or p.default is not p.empty)
    except ValueError as exc:
        raise CustomOpError(f"custom op {node.op.name!r}: an attribute Numba cannot type ({exc})") from None
    try:
        dispatcher.compile(signature)
    except NumbaError as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        reason = next((line for line in lines if not line.startswith(("Failed in", "During:"))),
                      lines[0] if lines else type(exc).__name__)
        raise CustomOpError(f"custom op {node.op.name!r}: its numba= {what} does not compile for "
                            f"({', '.join(str(t) for t in signature)}): {reason}") from None


@finishing_pass
def define_elementwise_functions(L):
    """Elementwise user ops are fused like built-in ones: define the functions their
    scalar spellings call, compiled for the dtypes they meet."""
    from numba import types

    for node in L.nodes:
        if node.op.user and node.op.kind == "elementwise":
            _define(L, node, "numba")
            signature = tuple(getattr(types, NUMBA_SCALAR[x.dtype]) for x in node.inputs)
            _compile_check(node, signature, "scalar function")


def _output_dims(L, node: Expr, partial: bool = False) -> tuple:
    """The kernel's sizes of ``node``'s result, found by running its type rule with each
    run-time input size replaced by distinct stand-ins, twice with the stand-ins in
    opposite orders: a result size that is the same input's stand-in both times is that
    input size; anything else (max(n, m), n - 1, a unique count) cannot be computed in the
    kernel: an error, or None for that size when ``partial`` (the caller reads it off the
    result: ``staged``)."""
    from ..types import TensorType

    if CUSTOM_OPS[node.op.name].elementwise:  # broadcasting, with the checks a built-in op gets
        L.infer_elementwise_shape(node)
        return L.shape[node.id]
    sizes = []  # the run-time sizes, in order of first appearance
    for x in node.inputs:
        for k in range(x.ndim):
            d = L.dim(x, k)
            if not isinstance(d, int) and d not in sizes:
                sizes.append(d)
    mappings = []
    for order in (1, -1):
        stand_in = {d: 1_000_003 + 2 * (j if order == 1 else len(sizes) - 1 - j) for j, d in enumerate(sizes)}
        types = [TensorType(x.dtype, tuple(stand_in.get(L.dim(x, k), L.dim(x, k)) for k in range(x.ndim)))
                 for x in node.inputs]
        by_value = {v: d for d, v in stand_in.items()}
        found = node.op.infer(tuple(types), **node.params).shape
        mappings.append([by_value.get(f, f if s is not None and f == s else None)
                         for f, s in zip(found, node.type.shape)])
    if partial:
        return tuple(a if a == b else None for a, b in zip(*mappings))
    if mappings[0] != mappings[1] or None in mappings[0]:
        advice = ("declare the inputs with static sizes" if any(None in x.type.shape for x in node.inputs)
                  else "only its result knows it, which a kernel cannot wait for inside a loop body: apply the op "
                       "outside the loop, or give it a numba= implementation with a static result size")
        raise CustomOpError(f"custom op {node.op.name!r} at {node.where() or '?'}: the compiled kernel cannot tell "
                            f"its result's size from its inputs' sizes at run time (its type rule gives "
                            f"{node.type!r}, a size that is not one input's size); {advice}")
    return tuple(mappings[0])


def _argument(L, x: Expr) -> str:
    if x.ndim == 0:
        L.ready(x)
        return L.values[x.id].name
    return L.copy_or_array(x)


@lowers("kind:custom")
def lower_custom(L, node: Expr):
    record = CUSTOM_OPS[node.op.name]
    L.shape[node.id] = _output_dims(L, node)
    args = [_argument(L, x) for x in node.inputs]
    at = max([L.avail(x) for x in node.inputs], default=0)
    attrs = "".join(f", {k}={attribute_code(node.op.name, k, v)}" for k, v in node.params.items())
    name = f"a{L.p(node)}"
    lines = [f"# {L.comment(node)}: custom op"]
    if record.numba is None:  # only inside loop bodies: elsewhere the function is split (staged.py)
        warn_once(node.op.name, "inside a loop body the compiled kernel calls its impl from an object-mode block",
                  "about 4-6 us")
        impl = _define(L, node, "impl")
        args = [f"np.array({a}, dtype=np.{x.dtype if x.dtype != 'bool' else 'bool_'})" if x.ndim == 0 else a
                for a, x in zip(args, node.inputs)]  # impl gets 0-d arrays, as from the reference evaluator
        call = f"{impl}({L.shape_text(node)}, {', '.join(args)}{attrs})"
        kind = L.numba_type(node.dtype, node.ndim)
        lines.append(f"with numba.objmode({name}={kind!r}):")
        lines.append(f"    {name} = {call}.item()" if node.ndim == 0 else f"    {name} = {call}")
        if node.ndim == 0:
            L.values[node.id] = Value("scalar", name=name, avail=at)
        else:
            L.values[node.id] = Value("array", name=name, array=name, avail=at, root=name)
        L.prelude(at).extend(lines)
        return
    fn = _define(L, node, "numba")
    from numba import types

    signature = [types.Array(getattr(types, NUMBA_SCALAR[x.dtype]), x.ndim, "C") if x.ndim
                 else getattr(types, NUMBA_SCALAR[x.dtype]) for x in node.inputs]
    signature.append(types.Array(getattr(types, NUMBA_SCALAR[node.dtype]), node.ndim, "C"))
    _compile_check(node, tuple(signature), "array function")
    L.allocate(name, node)
    lines.append(f"{fn}({', '.join(args + [name])}{attrs})")
    if node.ndim == 0:
        scalar = f"v{L.p(node)}"
        lines.append(f"{scalar} = {name}[()]")
        L.values[node.id] = Value("scalar", name=scalar, avail=at)
    else:
        L.values[node.id] = Value("array", name=name, array=name, avail=at, root=name)
    L.prelude(at).extend(lines)


@lowers("kind:custom_derivative")
def lower_custom_derivative(L, node: Expr):
    """``custom_vjp``/``custom_jvp`` nodes pass their body's value on unchanged."""
    body = node.inputs[0]
    L.shape[node.id] = L.shape[body.id]
    L.ready(body)
    L.values[node.id] = L.values[body.id]
