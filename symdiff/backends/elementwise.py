"""The elementwise family: scalar spellings of elementwise ops in generated source, and
vector-math passes (glibc's libmvec, see ``vector_math``) for transcendental arrays.

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


# A transcendental op over an array of at least this many static elements (or with a
# size known only at run time) is one vector-math pass (``vector_math``: libmvec,
# 8 doubles per call with AVX-512) instead of scalar libm calls in the fused loop.
# The pass breaks fusion (a temporary array, one more sweep over memory, about
# 1 ns per element), which even exp (3 ns per element as scalar libm, 0.6 as
# vectors) repays; tiny static arrays stay fused.
VECTOR_MATH_MIN_SIZE = 16


def use_vector_math(L, node: Expr) -> bool:
    """Whether to compute ``node`` with a vector-math pass instead of in a loop."""
    from . import vector_math

    if node.op.name not in vector_math.RECIPES or node.dtype not in ("float32", "float64"):
        return False
    if any(x.type.shape != node.type.shape or x.dtype != node.dtype for x in node.inputs):
        return False  # a pass reads whole arrays of the result's shape (a binary op's broadcast: fused)
    if not vector_math.available():
        return False
    if None in node.type.shape:
        return True
    return int(np.prod(node.type.shape, dtype=np.int64)) >= VECTOR_MATH_MIN_SIZE


def lower_vector_math(L, node: Expr):
    from . import vector_math

    arrays = []
    for x in node.inputs:
        L.fill(x)
        arrays.append(L.copy_or_array(x))
    at = max(L.avail(x) for x in node.inputs)
    name = f"a{L.p(node)}"
    L.allocate(name, node)
    function = f"_vm_{node.op.name}"
    L.prelude(at).append(f"{function}({', '.join(arrays)}, {name})  # {L.comment(node)}: libmvec, {vector_math.CHOICE.tag}")
    L.module_lines.setdefault("_SD_VECTOR_MATH", f"_SD_VECTOR_MATH = {vector_math.CHOICE.tag!r}  # in the cache key")
    L.values[node.id] = Value("array", name=name, array=name, avail=at, root=name)
