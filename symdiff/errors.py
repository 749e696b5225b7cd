"""Exceptions raised by symdiff.

Every error names the thing at fault: the op, the symbol, the shapes involved and,
for errors at graph-building time, the user's file and line.  Each class also
derives from the built-in exception a Python user would expect (``ValueError`` for
bad shapes, ``TypeError`` for bad dtypes or non-expressions) so existing
``except`` clauses keep working.
"""


class SymdiffError(Exception):
    """Base class of every error symdiff raises on purpose."""


class ShapeError(SymdiffError, ValueError):
    """Shapes that cannot be combined, at build time or when values arrive."""


class IndexOutOfBoundsError(SymdiffError, IndexError):
    """An index value outside its axis (a gather or scatter), found when values arrive."""


class DTypeError(SymdiffError, TypeError):
    """A dtype an op or a symbol cannot take."""


class GradientError(SymdiffError, ValueError):
    """A derivative that cannot be built (non-scalar cost, integer wrt, ...)."""


class InputError(SymdiffError, ValueError):
    """A missing, unknown or malformed input value given to an evaluator."""


class InputTypeError(SymdiffError, TypeError):
    """An input value of the wrong kind or dtype."""
