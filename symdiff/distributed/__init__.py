"""Data-parallel value, gradient and HVP of a loss over data on a Dask cluster.

``sd.distributed.Objective(loss, params, data, client=None, reduce="sum")`` keeps
the data on the workers (persisted once), ships the compiled kernel there, and
evaluates the loss, its gradient and Hessian-vector products with one call per
worker per evaluation; see :class:`~symdiff.distributed.objective.Objective` and
``docs/distributed.md``.  It needs the optional extra: ``pip install
"symdiff[distributed]"`` (Dask and distributed).  Importing this module imports
neither Dask nor Numba; building an Objective that needs a cluster does.
"""

from .objective import LOCAL_BELOW, BlockLostError, LocalEvaluationWarning, NotARowSumError, Objective, plan_placement

__all__ = ["Objective", "BlockLostError", "NotARowSumError", "LocalEvaluationWarning", "LOCAL_BELOW", "plan_placement"]
