"""The op registry: every primitive, one record each (see ``symdiff.ir.Op``).

Importing this package registers all primitives in ``symdiff.ir.OPS``.
"""

from . import elementwise, leaves, linalg, reductions, structure  # noqa: F401  (registers the ops)
from . import math  # noqa: F401
from . import special  # noqa: F401
from . import ordering  # noqa: F401
from . import creation  # noqa: F401
from . import convolution  # noqa: F401
from . import indexing  # noqa: F401
from . import decompositions  # noqa: F401
from . import loops  # noqa: F401
from ..ir import OPS  # noqa: F401
