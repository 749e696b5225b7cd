"""The elementwise family: scalar spellings of elementwise ops in generated source, and
NumPy's SIMD ufuncs for big transcendental arrays.

Elementwise ops need no lowering function: the driver fuses each into a loop nest as
one scalar statement, spelled by ``scalar_code`` (the op record's ``scalar_code``
unless a table here overrides it).
"""

from __future__ import annotations

import numpy as np

from ..ir import Expr
from .lowering import LoweringError, Value

# Scalar spellings that differ from the op records' ``scalar_code``: NumPy's NaN rules
# for maximum/minimum/sign, and Numba builtins instead of helper functions (each
# jitted helper costs a separate compilation on first use).
SCALAR_CODE_OVERRIDES = {
    "maximum": "({0} if {0} > {1} or {0} != {0} else {1})",  # a tie (0.0, -0.0) gives the second, as NumPy
    "minimum": "({0} if {0} < {1} or {0} != {0} else {1})",
    "sign": "(math.copysign(1, {0}) if {0} != 0 and {0} == {0} else {0} + 0)",  # sign(-0.0) is +0.0
    "cast": {"float64": "np.float64({0})", "float32": "np.float32({0})", "int64": "np.int64({0})",
             "bool": "({0} != 0)"},
}

# Spellings for one result dtype: NumPy's + and * on bools are "or" and "and"
# (Python's would give ints), and the sign of an int is an int.
DTYPE_SCALAR_CODE = {
    ("add", "bool"): "({0} | {1})",
    ("mul", "bool"): "({0} & {1})",
    ("sign", "int64"): "(1 if {0} > 0 else (-1 if {0} < 0 else 0))",
}


def scalar_code(op, params=None, dtype=None) -> str:
    """The scalar spelling of an elementwise op in generated source.

    >>> from symdiff.ir import OPS
    >>> scalar_code(OPS["exp"]), scalar_code(OPS["cast"], {"dtype": "float32"})
    ('math.exp({0})', 'np.float32({0})')
    """
    code = DTYPE_SCALAR_CODE.get((op.name, dtype)) or SCALAR_CODE_OVERRIDES.get(op.name, op.scalar_code)
    if isinstance(code, dict):
        code = code[(params or {}).get("dtype", "float64")]
    if code is None:
        raise LoweringError(f"op {op.name!r} has no scalar spelling for the Numba backend")
    return code




def scalar_code(op, params=None, dtype=None) -> str:
    """The scalar spelling of an elementwise op in generated source.

    >>> from symdiff.ir import OPS
    >>> scalar_code(OPS["exp"]), scalar_code(OPS["cast"], {"dtype": "float32"})
    ('math.exp({0})', 'np.float32({0})')
    """
    code = DTYPE_SCALAR_CODE.get((op.name, dtype)) or SCALAR_CODE_OVERRIDES.get(op.name, op.scalar_code)
    if isinstance(code, dict):
        code = code[(params or {}).get("dtype", "float64")]
    if code is None:
        raise LoweringError(f"op {op.name!r} has no scalar spelling for the Numba backend")
    return code


# Transcendental ops computed by NumPy (SIMD) on big arrays, inside an object-mode block.
VECTOR_MATH = {"tanh": "np.tanh", "exp": "np.exp", "log": "np.log", "sin": "np.sin", "cos": "np.cos",
               "tan": "np.tan", "expm1": "np.expm1", "log1p": "np.log1p"}
VECTOR_MATH_MIN_STATIC = 64  # static elements per batch row, for shapes with a None dim
VECTOR_MATH_MIN_SIZE = 4096  # elements, for fully static shapes
VECTOR_MATH_MAX_CALLS = 4  # per kernel (each block is compiled in object mode)



def use_vector_math(L, node: Expr) -> bool:
    """Whether to compute ``node`` with NumPy's vectorised ufunc instead of a loop.

    Numba's loops call scalar libm: tanh over 256x128 takes ~0.5 ms vs ~0.05 ms for
    ``np.tanh``.  A NumPy call costs an object-mode block (~2 us per call, a little
    compile time) and breaks fusion, so only big arrays qualify: at least
    VECTOR_MATH_MIN_STATIC static elements per row of a batch (a None dimension), or
    VECTOR_MATH_MIN_SIZE elements in all; at most VECTOR_MATH_MAX_CALLS per kernel.
    """
    if node.op.name not in VECTOR_MATH or node.dtype not in ("float32", "float64"):
        return False
    if L.vector_math_calls >= VECTOR_MATH_MAX_CALLS:
        return False
    static = int(np.prod([d for d in node.type.shape if d is not None], dtype=np.int64))
    if None in node.type.shape:
        return static >= VECTOR_MATH_MIN_STATIC
    return static >= VECTOR_MATH_MIN_SIZE


def lower_vector_math(L, node: Expr):
    (x,) = node.inputs
    L.fill(x)
    array = L.copy_or_array(x) if L.values[x.id].kind != "view" else L.copy_of(x)
    at = L.avail(x)
    name = f"a{L.p(node)}"
    kind = L.numba_type(node.dtype, node.ndim)
    L.prelude(at).append(f"with numba.objmode({name}={kind!r}):  # {L.comment(node)}: NumPy's SIMD ufunc")
    L.prelude(at).append(f"    {name} = np.ascontiguousarray({VECTOR_MATH[node.op.name]}({array}))")
    L.vector_math_calls += 1
    L.values[node.id] = Value("array", name=name, array=name, avail=at, root=name)
