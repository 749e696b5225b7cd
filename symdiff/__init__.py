"""symdiff: a symbol-to-symbol differentiation compiler.

Build expressions over named symbols; ``grad`` appends gradient nodes to the same
graph, which can then be printed, differentiated again, evaluated or compiled.

>>> import symdiff as sd
>>> a, b = sd.scalars("a b")
>>> e = (a + b) * (b + 1)
>>> sd.evaluate(sd.grad(e, [a, b]), {a: 2.0, b: 1.0})
[np.float64(2.0), np.float64(5.0)]
"""

from . import frontend as _frontend  # noqa: F401  (installs Expr's operators)
from . import testing  # noqa: F401  (sd.testing.check_grads, check_jvp, check_hvp)
from .autodiff import grad, hvp, jvp, vjp
from .errors import DTypeError, GradientError, InputError, InputTypeError, ShapeError, SymdiffError
from .evaluate import evaluate
from .frontend import (
    abs, add, astype, broadcast_like, broadcast_to, clip, concatenate, constant, cos, dim, divide, dot, equal, exp,
    expand_dims, expm1, greater, greater_equal, less, less_equal, log, log1p, log_softmax, logical_and, logical_not,
    logical_or, logsumexp, matmul, matrix, max, maximum, mean, min, minimum, multiply, negative, not_equal, power, prod,
    relu, reshape, scalar, scalars, sigmoid, sign, sin, softmax, softplus, sqrt, square, squeeze, stack, stop_gradient,
    subtract, sum, tan, tanh, tensor, transpose, vector, where,
)
from .ir import OPS, Expr, Graph, node_count, toposort
from .rewrite import optimize
from .types import TensorType
from .verify import verify
# issue 3: compiled functions
from .function import function
# issue 6: Jacobians, Hessians, sparse derivatives
from .jacobians import ChainPlan, chain_order, derivative, hessian, jacobian, jacobian_chain
from .sparsity import (
    Pattern, SparseDerivative, color_columns, hessian_pattern, jacobian_pattern, sparse_hessian, sparse_jacobian,
    star_colors,
)
# issue 5: printers and the SymPy bridge (the command line is symdiff.cli)
from .printers import from_json, to_dot, to_json, to_text
from .sympy_bridge import from_sympy, to_latex, to_sympy

# issue 10: NumPy vocabulary, one front-end module of symdiff.frontend per family: elementwise math and special functions
from .frontend.math import (  # noqa: E402
    arccos, arccosh, arcsin, arcsinh, arctan, arctan2, arctanh, around, cbrt, ceil, copysign, cosh, exp2, fix, floor,
    floor_divide, fmod, heaviside, hypot, isfinite, isinf, isnan, log10, log2, logaddexp, logaddexp2, mod, nan_to_num,
    reciprocal, remainder, rint, round, sinh, trunc,
)
from . import special  # noqa: F401,E402  (sd.special: SciPy's names)
# issue 10: indexing, gathers and scatters
from .errors import IndexOutOfBoundsError
from .frontend.indexing import IndexDTypeError, take, take_along_axis  # also installs Expr.at
# issue 10: cumulative and ordering
from .frontend.ordering import (
    argmax, argmin, argsort, cumprod, cumsum, diff, flip, median, percentile, quantile, roll, sort,
)
# issue 10: structure, constructors, statistics
from .frontend.structure import (  # noqa: E402
    arange, array_split, atleast_1d, atleast_2d, column_stack, diag, diagonal, eye, full, full_like, hstack, inner, kron,
    linspace, moveaxis, ones, ones_like, outer, pad, ravel, repeat, split, swapaxes, tensordot, tile, trace, tril, triu,
    vstack, zeros, zeros_like,
)
from .frontend.einsum import einsum  # noqa: E402
from .frontend.statistics import average, corrcoef, cov, std, var  # noqa: E402
# issue 10: convolution
from . import signal  # noqa: F401  (sd.signal: SciPy's names)
from .frontend.convolution import conv2d, convolve, correlate
# issue 13: custom ops and derivative overrides
from .custom import custom_jvp, custom_op, custom_vjp
# issue 11: linear algebra
from . import linalg  # noqa: F401,E402  (sd.linalg: np.linalg's names, SciPy's solve_triangular, cho_*, expm)
# issue 12: loops
from .loops import CheckpointWarning, LoopError, fori_loop, scan, while_loop  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name: str):
    # sd.distributed (issue 16) is imported on first use: it pulls in asyncio, about 50 ms
    # of every process's start-up, for the few programs that use a cluster.
    if name == "distributed":
        import importlib

        return importlib.import_module(".distributed", __name__)
    raise AttributeError(f"module 'symdiff' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"distributed"})
