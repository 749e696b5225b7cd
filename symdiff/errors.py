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


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised by the caller point at the user's
    line: the first frame outside the symdiff package."""
    import os
    import sys

    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(2), 2  # stacklevel 2: the caller's caller
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level
