"""``Objective``: value, gradient and HVP of a row-sum loss over data held by Dask workers.

The client side of ``sd.distributed`` (the worker side is ``worker.py``).  Dask owns
the data: every block of rows is a persisted future (computed from a Dask array's
graph, or scattered from a list of NumPy blocks), so Dask knows where it lives and
recomputes it when a worker is lost.  This module owns the evaluations: one
``Client.run`` call per evaluation (through the scheduler, but no task) reaches the
workers, each runs the compiled kernel over the blocks it holds, and the client
sums the per-block results in block order.  ``docs/distributed.md`` explains the design and its
measurements.
"""

from __future__ import annotations

import math
import sys
import time
import uuid
import warnings
import weakref
from collections.abc import Mapping

import numpy as np

from ..errors import DTypeError, InputError, ShapeError, SymdiffError
from ..evaluate import coerce_input, evaluate
from ..ir import Expr, as_list, symbols_of, toposort
from ..ops.leaves import numpy_dtype
from ..types import fmt_shape
from . import worker

__all__ = ["Objective", "BlockLostError", "NotARowSumError", "LocalEvaluationWarning", "plan_placement",
           "LOCAL_BELOW", "dask_modules"]

# Work on the parameters alone (nodes no data symbol reaches) is done again in every slice of a
# block.  Slices are used when that work reads and writes at most this many elements, small next
# to a 1 MiB slice (131,072 doubles): a 20-vector of weights, a 30 x 30 matrix factorised.
PARAMETER_WORK_LIMIT = 4096


def slice_size(outputs, data_symbols, requested) -> int:
    """The slice size (bytes of data; 0: whole blocks) for a kernel of ``outputs``: ``requested``
    when given, else ``worker.SLICE_BYTES`` unless the parameter-only work is larger than
    ``PARAMETER_WORK_LIMIT`` elements, of unknown size, or a loop."""
    if requested is not None:
        return int(requested)
    data = {s.id for s in data_symbols}
    reaches_data: dict = {}
    work = 0
    for node in toposort(outputs):
        reaches_data[node.id] = node.id in data or any(reaches_data[x.id] for x in node.inputs)
        if reaches_data[node.id] or node.is_symbol or node.is_constant:
            continue
        if "body" in node.params:
            return 0
        for t in (node, *node.inputs):
            if None in t.type.shape:
                return 0
            work += math.prod(t.type.shape)
    return worker.SLICE_BYTES if work <= PARAMETER_WORK_LIMIT else 0


# Below this many bytes of data an evaluation runs in the client process: the kernel then takes
# about as long as one round trip to the workers (docs/distributed.md, "When it runs locally").
LOCAL_BELOW = 32 * 2**20

INSTALL_HINT = 'sd.distributed needs Dask: pip install "symdiff[distributed]" (dask[array] and distributed)'


# How long an evaluation waits for a worker when the cluster has none (starting, restarting).
WORKER_WAIT_SECONDS = 60


class BlockLostError(SymdiffError, RuntimeError):
    """A block of rows was lost with its worker and could not be recovered."""


class NotARowSumError(SymdiffError, ValueError):
    """The loss is not a sum of per-row terms, so results on blocks cannot be added up."""


class LocalEvaluationWarning(UserWarning):
    """The data is small enough that evaluations run in the client process."""


def dask_modules():
    """``(dask, dask.array, distributed)``, or an ImportError naming the extra to install."""
    try:
        import dask
        import dask.array as da
        import distributed
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT}; importing it failed: {exc}") from exc
    return dask, da, distributed


def _is_dask_array(value) -> bool:
    if not (type(value).__module__ or "").startswith("dask"):
        return False  # never import Dask just to learn that a NumPy array is not a Dask array
    return isinstance(value, dask_modules()[1].Array)


def plan_placement(rows: list, holders: list, workers: list) -> list:
    """Which worker evaluates each block: balanced by rows, moving as few blocks as possible.

    ``rows[i]``: block i's row count; ``holders[i]``: the workers holding it;
    ``workers``: the live workers.  Returns one worker per block.  Blocks are taken
    largest first; each stays with its least loaded holder unless that would put
    the holder more than half of that block above an equal share, in which case
    it goes to the least loaded worker (a move).

    >>> plan_placement([10, 10, 10, 10], [["a"], ["a"], ["a"], ["b"]], ["a", "b"])
    ['a', 'a', 'b', 'b']
    >>> plan_placement([5, 5], [["a"], []], ["a", "b"])
    ['a', 'b']
    """
    if not workers:
        raise RuntimeError("symdiff.distributed: the cluster has no workers")
    share = sum(rows) / len(workers)
    load = {w: 0 for w in workers}
    target = [None] * len(rows)
    for i in sorted(range(len(rows)), key=lambda k: (-rows[k], k)):
        live = sorted((w for w in holders[i] if w in load), key=lambda w: (load[w], w))
        if live and load[live[0]] + rows[i] / 2 <= share:
            target[i] = live[0]
        else:
            target[i] = min(load, key=lambda w: (load[w], w))
        load[target[i]] += rows[i]
    return target


def _graph_document(named: dict) -> str:
    """``sd.to_json`` of the outputs with the nodes listed in the order this process created them.

    A worker rebuilding the graph creates its nodes in listing order, and the kernel's
    generated names follow the creation order of the lowered graph's nodes; listed in
    the client's order, the worker usually generates the client's very source, so it
    loads the kernel the client compiled from the shared cache instead of compiling
    it again.  Notes are dropped (they name nodes by listing position).

    >>> import json, symdiff as sd
    >>> y, x = sd.scalar("y"), sd.scalar("x")
    >>> [n.get("name") for n in json.loads(_graph_document({"out0": x * y}))["nodes"]]
    ['y', 'x', None]
    """
    import json

    from ..printers import Listing, to_json

    listing = Listing(named, optimize=False)
    document = json.loads(to_json(listing))
    order = sorted(range(len(listing.nodes)), key=lambda k: listing.nodes[k].id)
    rank = {position: k for k, position in enumerate(order)}
    records = sorted(document["nodes"], key=lambda record: rank[record["id"]])
    for record in records:
        node = listing.nodes[record["id"]]
        record["id"] = rank[record["id"]]
        record["inputs"] = [rank[i] for i in record["inputs"]]
        record.pop("note", None)
        if node.origin is not None:  # the kernel's comments name it: the same text keeps the cached file valid
            record["origin"] = [str(node.origin[0]), int(node.origin[1])]
    for output in document["outputs"]:
        output["node"] = rank[output["node"]]
    document["nodes"] = records
    return json.dumps(document, separators=(",", ":"))


class _Resources:
    """What an Objective must release; its finalizer holds this, never the Objective."""

    def __init__(self):
        self.client = None
        self.cluster = None
        self.owned = False
        self.token = None
        self.futures = []

    def close(self):
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        self.futures = []
        if client is None:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.owned:
                try:
                    client.close()
                finally:
                    if cluster is not None:
                        cluster.close()
            else:
                try:
                    client.run(worker.forget, self.token, on_error="ignore")
                except Exception:  # the cluster may be gone already: nothing is left to forget
                    pass


class Objective:
    """A row-sum loss over data partitioned on a Dask cluster: value, gradient and HVP.

    ``loss``: a scalar expression over the parameter symbols ``params`` and data
    symbols, each with a ``None`` leading dimension (the rows).  The loss must be a
    sum of per-row terms (a log-likelihood, squared errors summed over rows), so
    that its value on all rows is the sum of its values on blocks of rows; add a
    penalty on the parameters outside (see ``docs/distributed.md``).
    ``data``: maps each data symbol (or its name) to a Dask array, a list of NumPy
    blocks (the same number for every symbol, block i of each with the same rows)
    or one NumPy array (split into one block per worker).  Dask arrays are
    rechunked to the first one's row chunks and one chunk along the other axes.
    ``client``: a ``distributed.Client``; ``None`` starts a ``LocalCluster`` of
    ``n_workers`` processes (default: one per core), one thread each, closed by
    :meth:`close`, by ``with``, or when the Objective is garbage collected.
    ``reduce``: "sum", or "mean" to divide by the total number of rows.
    ``local_below``: data smaller than this many bytes is evaluated in this process
    (and no cluster is started), with a :class:`LocalEvaluationWarning`; 0: never.
    ``progress``: True (stderr) or a file: one line per evaluation.
    ``check_rows``: at the first evaluation, check on three rows that the loss adds
    up over rows (this catches a mean over rows or a penalty inside the loss).
    ``slice_bytes``: blocks are evaluated in slices of rows holding about this many
    bytes, so that a kernel reading its data twice (the gradient's ``X.T @ r`` after
    ``X @ w``) finds it in the cache; ``None`` (the default) chooses 1 MiB, or whole
    blocks when work on the parameters alone (a factorisation of a parameter matrix)
    would be repeated in every slice; 0: whole blocks.
    ``retries``: how many times an evaluation is retried after losing workers;
    ``recovery_timeout``: how long to wait for Dask to recompute lost blocks.

    Parameter values are one array (for one parameter), a list in ``params`` order
    or a dict by symbol or name.  Results are float64.  :meth:`fun` and :meth:`hessp`
    take and return flat vectors, for ``scipy.optimize.minimize(obj.fun, x0,
    jac=True, hessp=obj.hessp)``; :meth:`flatten` and :meth:`unflatten` convert.

    >>> import warnings, numpy as np, symdiff as sd
    >>> w = sd.vector("w", 2)
    >>> X, y = sd.matrix("X", (None, 2)), sd.vector("y")
    >>> loss = sd.sum((X @ w - y) ** 2)
    >>> data = {X: [np.eye(2), np.ones((1, 2))], y: [np.array([1.0, 2.0]), np.array([4.0])]}
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")   # small data: it runs in this process, and says so
    ...     obj = sd.distributed.Objective(loss, w, data)
    >>> obj.value_and_grad([1.0, 2.0])
    (1.0, array([-2., -2.]))
    >>> obj.hvp([1.0, 2.0], [1.0, 0.0])
    array([4., 2.])
    >>> obj.close()
    """

    def __init__(self, loss, params, data, client=None, reduce="sum", *, n_workers=None,
                 local_below=LOCAL_BELOW, progress=False, check_rows=True, retries=3, recovery_timeout=60.0,
                 slice_bytes=None):
        dask_modules()  # the extra is required even when the data turns out small enough to stay here
        self._resources = _Resources()
        self._finalizer = weakref.finalize(self, self._resources.close)
        self.client = None
        self._closed = False
        self._check_loss(loss)
        self.loss = loss
        self.params, self._single = self._check_params(params)
        self.data_symbols, values = self._check_data(data, loss)
        if reduce not in ("sum", "mean"):
            raise ValueError(f"Objective: reduce must be 'sum' or 'mean', got {reduce!r}")
        self.reduce = reduce
        self._progress = sys.stderr if progress is True else (progress or None)
        self._check_rows = bool(check_rows)
        if slice_bytes is not None and (not isinstance(slice_bytes, (int, np.integer)) or slice_bytes < 0):
            raise ValueError(f"Objective: slice_bytes must be None or an int >= 0, got {slice_bytes!r}")
        self._slice_request = slice_bytes
        self._slice_bytes = {}  # mode -> the slice size its kernel runs with
        self._retries = int(retries)
        self._recovery_timeout = float(recovery_timeout)
        self._functions = {}  # mode -> (compiled function, kernel spec for the workers)
        self._sample = None  # a few rows for the row-sum check, fetched at construction
        self._graphs = self._build_graphs()
        self._shapes = [s.type.shape if None not in s.type.shape else None for s in self.params]
        self.evaluations = 0
        self.last_evaluation = None
        self.timings = []  # (mode, seconds, slowest worker's kernel seconds) per evaluation
        self._token = self._resources.token = f"symdiff-{uuid.uuid4().hex[:16]}"
        self._version = 0
        self._placement = None  # {worker: [(block, key)]}
        self._sent = {}  # worker -> (placement version it holds, kernel hashes it holds)
        self._stale = False
        self._known = set()  # the workers there were at the last placement

        kind = self._data_kind(values)
        self._dask_data = kind == "dask"
        if self._dask_data:
            values = self._align_dask(values)
            self.block_rows = [int(c) for c in values[0].chunks[0]]
            self.nbytes = self._nbytes([a.shape for a in values])
        else:
            if kind == "array":
                self._check_blocks([[v] for v in values])
                shapes = [v.shape for v in values]
            else:
                bundles = self._check_blocks(values)
                shapes = [(sum(b[k].shape[0] for b in bundles), *bundles[0][k].shape[1:])
                          for k in range(len(values))]
            self.nbytes = self._nbytes(shapes)
        self.local = self.nbytes < local_below
        if self.local:
            self.note = (f"{self.nbytes / 2**20:.2f} MiB of data is below local_below={local_below} bytes, so "
                         "evaluations run in this process: there the kernel takes less time than one round "
                         "trip to a cluster would; pass local_below=0 to use the cluster anyway")
            warnings.warn(f"symdiff.distributed: {self.note}", LocalEvaluationWarning, stacklevel=2)
            if self._dask_data:
                self._blocks = self._compute_locally(values, client)
            else:
                self._blocks = self._check_blocks([[v] for v in values] if kind == "array" else values)
                self._blocks = [self._converted(b) for b in self._blocks]
                self.block_rows = [b[0].shape[0] for b in self._blocks]
            self.rows = sum(self.block_rows)
            return
        self.note = ""
        _, _, distributed = dask_modules()
        if client is None:
            # ":0": a free port for the scheduler's HTTP server (None still takes 8787, and warns if it is busy)
            cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                               dashboard_address=":0")
            client = distributed.Client(cluster)
            self._resources.cluster, self._resources.owned = cluster, True
        else:
            # At exit the caller's client closes itself; forgetting the placement on its workers is moot then.
            self._finalizer.atexit = False
        self._resources.client = self.client = client
        # While the workers make the blocks, the client compiles the value+gradient kernel (or loads it
        # from the cache) and the workers import Numba and then load that kernel, all in the background.
        client.run(worker.preload, wait=False)
        if self._dask_data:
            self._originals = None  # Dask recomputes lost blocks from their graph
            self._futures = self._persist(values)
            self._install("value_and_grad")
            self._wait_for_blocks()
        else:
            if kind == "array":  # one block per worker
                parts = max(1, len(self._workers()))
                values = [np.array_split(v, parts) for v in values]
            # Scattered blocks have no graph to be recomputed from: the client keeps the user's
            # arrays (references, no copies) and scatters a lost block again.
            self._originals = self._check_blocks(values)
            self.block_rows = [b[0].shape[0] for b in self._originals]
            self._install("value_and_grad")
            self._futures = [None] * len(self._originals)
            self._scatter(range(len(self._originals)))
        self.rows = sum(self.block_rows)
        self._resources.futures = self._futures
        self._place()
        self._sample = self._sample_rows() if self._check_rows else None

    # ------------------------------------------------------------------ checks

    @staticmethod
    def _check_loss(loss):
        if not isinstance(loss, Expr):
            raise TypeError(f"Objective: loss must be a symdiff expression, got {type(loss).__name__}")
        if loss.ndim != 0:
            raise ShapeError(f"Objective: the loss must be a scalar, got {loss.type!r} ({loss.where()})")
        if loss.dtype not in ("float64", "float32"):
            raise DTypeError(f"Objective: the loss must be a float, got {loss.type!r} ({loss.where()})")

    @staticmethod
    def _check_params(params):
        symbols, single = as_list(params)
        if not symbols:
            raise InputError("Objective: give at least one parameter symbol")
        for sym in symbols:
            if not sym.is_symbol:
                raise InputError(f"Objective: parameters must be symbols, got {sym!r}")
            if sym.dtype not in ("float64", "float32"):
                raise DTypeError(f"Objective: parameter {sym.name!r} must be a float to be differentiated; "
                                 f"it is {sym.type!r}")
        if len({s.name for s in symbols}) != len(symbols):
            raise InputError("Objective: the parameters must be distinct symbols with distinct names")
        return symbols, single

    def _check_data(self, data, loss):
        if not isinstance(data, Mapping):
            raise TypeError(f"Objective: data must map data symbols to arrays, got {type(data).__name__}")
        used = {s.name: s for s in symbols_of(loss)}
        param_names = {s.name for s in self.params}
        symbols, values = [], []
        for key, value in data.items():
            if isinstance(key, str) and key in used:
                sym = used[key]
            elif isinstance(key, Expr) and key.is_symbol:
                sym = key
            elif isinstance(key, str):
                raise InputError(f"Objective: the loss has no symbol named {key!r}; it has {', '.join(sorted(used))}")
            else:
                raise InputError(f"Objective: data keys must be symbols or symbol names, got {key!r}")
            if sym.name in param_names:
                raise InputError(f"Objective: {sym.name!r} is a parameter; it cannot also be data")
            if used.get(sym.name) is not sym:
                raise InputError(f"Objective: the loss does not use the data symbol {sym!r}")
            if sym.ndim == 0 or sym.type.shape[0] is not None:
                raise ShapeError(f"Objective: data symbol {sym.name!r} needs a None leading dimension (its rows); "
                                 f"it is {sym.type!r}")
            if any(s is sym for s in symbols):
                raise InputError(f"Objective: data symbol {sym.name!r} is given twice")
            symbols.append(sym)
            values.append(value)
        missing = [s for name, s in used.items() if name not in param_names and all(d is not s for d in symbols)]
        if missing:
            raise InputError("Objective: the loss uses symbols that are neither parameters nor data: "
                             + ", ".join(f"{s.name} ({s.type!r})" for s in missing))
        if not symbols:
            raise InputError("Objective: the loss uses no data symbol; data must give the rows")
        return symbols, values

    def _data_kind(self, values) -> str:
        kinds = []
        for sym, value in zip(self.data_symbols, values):
            if _is_dask_array(value):
                kinds.append("dask")
            elif isinstance(value, np.ndarray):
                kinds.append("array")
            elif isinstance(value, (list, tuple)):
                kinds.append("blocks")
            else:
                raise TypeError(f"Objective: data for {sym.name!r} must be a Dask array, a list of NumPy blocks "
                                f"or a NumPy array, got {type(value).__name__}")
        if len(set(kinds)) > 1:
            raise TypeError("Objective: give every data symbol the same kind of value (all Dask arrays, all "
                            f"lists of blocks or all NumPy arrays), got {', '.join(kinds)}")
        return kinds[0]

    @staticmethod
    def _check_array(sym, shape, dtype, what):
        if len(shape) != sym.ndim or any(w is not None and w != s for w, s in zip(sym.type.shape, shape)):
            raise ShapeError(f"Objective: data symbol {sym.name!r} has type {sym.type!r} but {what} has "
                             f"shape {fmt_shape(tuple(shape))}")
        if np.dtype(dtype).kind not in "biuf" or not np.can_cast(dtype, numpy_dtype(sym.dtype), "safe"):
            raise DTypeError(f"Objective: data symbol {sym.name!r} has type {sym.type!r} but {what} is "
                             f"{dtype}, which does not cast safely to {sym.dtype}; convert it (.astype) or "
                             f"declare the symbol {dtype}")

    def _check_blocks(self, values) -> list:
        """Per block, a tuple of the user's arrays (one per data symbol), checked, not copied."""
        lists = []
        for sym, blocks in zip(self.data_symbols, values):
            arrays = []
            for k, block in enumerate(blocks):
                array = np.asarray(block)
                self._check_array(sym, array.shape, array.dtype, f"its block {k}")
                arrays.append(array)
            lists.append(arrays)
        counts = {len(b) for b in lists}
        if len(counts) > 1 or counts == {0}:
            sizes = ", ".join(f"{s.name}: {len(b)}" for s, b in zip(self.data_symbols, lists))
            raise ShapeError(f"Objective: every data symbol needs the same, nonzero number of blocks ({sizes})")
        bundles = list(zip(*lists))
        for k, bundle in enumerate(bundles):
            if len({a.shape[0] for a in bundle}) > 1:
                sizes = ", ".join(f"{s.name}: {a.shape[0]}" for s, a in zip(self.data_symbols, bundle))
                raise ShapeError(f"Objective: block {k} has different numbers of rows ({sizes})")
        return bundles

    def _align_dask(self, arrays) -> list:
        """The Dask arrays with the first one's row chunks and one chunk along the other axes."""
        for sym, arr in zip(self.data_symbols, arrays):
            self._check_array(sym, arr.shape, arr.dtype, "its Dask array")
            if any(math.isnan(c) for c in arr.chunks[0]):
                raise ShapeError(f"Objective: the Dask array for {sym.name!r} has unknown chunk sizes; "
                                 "call .compute_chunk_sizes() on it first")
        if len({arr.shape[0] for arr in arrays}) > 1:
            sizes = ", ".join(f"{s.name}: {a.shape[0]}" for s, a in zip(self.data_symbols, arrays))
            raise ShapeError(f"Objective: the data arrays have different numbers of rows ({sizes})")
        rows = arrays[0].chunks[0]
        return [arr.rechunk({0: rows, **{axis: -1 for axis in range(1, arr.ndim)}}) for arr in arrays]

    def _nbytes(self, shapes) -> int:
        return int(sum(math.prod(shape) * np.dtype(numpy_dtype(sym.dtype)).itemsize
                       for sym, shape in zip(self.data_symbols, shapes)))

    def _dtypes(self) -> tuple:
        return tuple(np.dtype(numpy_dtype(s.dtype)).str for s in self.data_symbols)

    def _converted(self, bundle) -> tuple:
        return worker.make_bundle(self._dtypes(), *bundle)

    def _compute_locally(self, arrays, client) -> list:
        """A Dask array's blocks as NumPy arrays in this process (its partitioning is kept)."""
        dask, _, _ = dask_modules()
        if client is not None:
            computed = client.gather(client.compute(arrays))
        else:
            computed = dask.compute(*arrays)
        edges = np.cumsum([0, *self.block_rows])
        return [self._converted([a[edges[i]:edges[i + 1]] for a in computed]) for i in range(len(self.block_rows))]

    # ------------------------------------------------------------------ blocks on the cluster

    def _block_key(self, index: int, generation: int = 0) -> str:
        return f"{self._token}-block-{index}" + (f"-m{generation}" if generation else "")

    def _persist(self, arrays) -> list:
        """One future per block: a task packing block i of every array, computed on the workers."""
        dask, _, _ = dask_modules()
        columns = [arr.to_delayed().reshape(-1) for arr in arrays]
        pack = dask.delayed(worker.make_bundle, pure=True)
        bundles = [pack(self._dtypes(), *(column[i] for column in columns), dask_key_name=self._block_key(i))
                   for i in range(len(self.block_rows))]
        return self.client.compute(bundles)

    def _wait_for_blocks(self):
        dask_modules()[2].wait(self._futures)
        self._raise_for_lost(self._futures, "computing")

    def _install(self, mode: str):
        """Compile ``mode`` here and have every worker build it in the background (no waiting)."""
        _, spec = self._function(mode)
        self.client.run(worker.install, spec, wait=False)

    def _scatter(self, indices):
        """Send NumPy blocks to the least loaded workers (round robin over the given blocks)."""
        indices = list(indices)
        workers = sorted(self._workers())
        load = {w: 0 for w in workers}
        if self._placement:
            for w, items in self._placement.items():
                if w in load:
                    load[w] += sum(self.block_rows[i] for i, _ in items)
        for i in indices:
            target = min(workers, key=lambda w: (load[w], w))
            load[target] += self.block_rows[i]
            [future] = self.client.scatter([self._converted(self._originals[i])], workers=[target], hash=False)
            self._futures[i] = future

    def _workers(self) -> list:
        """The live workers.  A cluster that is starting, or whose nanny is restarting a lost
        worker, can have none for a moment (the scheduler listed none in a CI run right after a
        test killed a worker): wait for one, up to ``WORKER_WAIT_SECONDS``."""
        workers = list(self.client.scheduler_info()["workers"])
        if not workers:
            try:
                self.client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
            except TimeoutError as exc:
                raise RuntimeError(f"symdiff.distributed: the cluster has no workers (waited "
                                   f"{WORKER_WAIT_SECONDS} s for one)") from exc
            workers = list(self.client.scheduler_info()["workers"])
        return workers

    def _raise_worker_error(self, address: str, error: BaseException):
        """A worker's error, naming the block it was evaluating (``worker.run_blocks`` marks it);
        symdiff's own errors (a size that disagrees) keep their class."""
        index = getattr(error, "block_index", None)
        where = f"{self._describe_block(index)} on worker {address}" if index is not None else f"worker {address}"
        if isinstance(error, SymdiffError):
            try:
                raise type(error)(f"symdiff.distributed: {where}: {error}") from error
            except TypeError:  # an error class that takes other arguments
                pass
        raise RuntimeError(f"symdiff.distributed: {where} failed: {error!r}") from error

    def _describe_block(self, i: int) -> str:
        start = sum(self.block_rows[:i])
        names = ", ".join(s.name for s in self.data_symbols)
        return f"block {i} (rows {start}:{start + self.block_rows[i]} of {names})"

    def _raise_for_lost(self, futures, doing: str):
        for i, future in enumerate(futures):
            if future.status == "error":
                raise BlockLostError(f"symdiff.distributed: {self._describe_block(i)} failed while {doing} it: "
                                     f"{future.exception()!r}") from future.exception()
            if future.status in ("cancelled", "lost"):
                raise BlockLostError(f"symdiff.distributed: {self._describe_block(i)} was lost while {doing} it "
                                     "and cannot be recomputed (its data has no graph Dask could rerun)")

    def _who_has(self) -> dict:
        alive = [f for f in self._futures if f.status != "cancelled"]  # Dask refuses to locate cancelled ones
        return dict(self.client.who_has(alive)) if alive else {}

    def _place(self):
        """Balance the blocks over the live workers (moving as few as possible); new placement version."""
        _, _, distributed = dask_modules()
        workers = self._workers()
        who = self._who_has()
        holders = [list(who.get(f.key, ())) for f in self._futures]
        target = plan_placement(self.block_rows, holders, workers)
        moves = [i for i, w in enumerate(target) if w not in holders[i]]
        if moves:
            self._generation = getattr(self, "_generation", 0) + 1
            moved = {i: self.client.submit(worker.same_bundle, self._futures[i], workers=[target[i]],
                                           allow_other_workers=True, pure=False,
                                           key=self._block_key(i, self._generation)) for i in moves}
            distributed.wait(list(moved.values()))
            for i, future in moved.items():
                self._futures[i] = future
            self._raise_for_lost(self._futures, "moving")
            who = self._who_has()
            holders = [list(who.get(f.key, ())) for f in self._futures]
            target = [w if w in holders[i] else (holders[i] or [w])[0] for i, w in enumerate(target)]
        placement = {w: [] for w in workers}
        for i, w in enumerate(target):
            placement.setdefault(w, []).append((i, self._futures[i].key))
        self._version += 1
        self._placement = {w: items for w, items in placement.items() if items}
        self._known = set(workers)
        self._stale = False

    # ------------------------------------------------------------------ kernels

    def _build_graphs(self) -> dict:
        """{mode: (inputs, outputs)}, built in a fixed order whatever is evaluated first.

        The kernel's generated names follow the order nodes were created in, and its
        comments quote their origins; building every mode's graph here, with the
        derivative nodes given the loss's origin, makes each kernel's source (and so
        its cache entry) the same from one run to the next.
        """
        from ..autodiff import grad, hvp
        from ..frontend import tensor
        from ..ir import new_node_mark, toposort

        mark = new_node_mark()
        directions = []
        taken = {s.name for s in symbols_of(self.loss)}
        for p in self.params:
            name = f"{p.name}_direction"
            while name in taken:
                name += "_"
            taken.add(name)
            directions.append(tensor(name, p.type.shape, p.dtype))
        graphs = {
            "value": ([*self.params, *self.data_symbols], [self.loss]),
            "value_and_grad": ([*self.params, *self.data_symbols], [self.loss, *grad(self.loss, self.params)]),
            "hvp": ([*self.params, *directions, *self.data_symbols], list(hvp(self.loss, self.params, directions))),
        }
        for node in toposort([out for _, outputs in graphs.values() for out in outputs]):
            if node.id >= mark:
                node.origin = self.loss.origin
        return graphs

    def _function(self, mode: str):
        """The compiled function for ``mode`` (built on the client first) and its spec for the workers."""
        known = self._functions.get(mode)
        if known is not None:
            return known
        from ..function import function

        inputs, outputs = self._graphs[mode]
        compiled = function(inputs, outputs)  # the client compiles first: workers then load from the cache
        self._slice_bytes[mode] = slice_size(compiled.lowered_outputs, self.data_symbols, self._slice_request)
        spec = None
        if not self.local:
            # The workers get the graph the client lowered (after its rewrites) and lower it as it is: the
            # same nodes in the same order give the same kernel source, so the kernel the client compiled
            # is loaded from a shared cache.  Rewriting again on a worker could create nodes in another order.
            names = [f"out{k}" for k in range(len(outputs))]
            document = _graph_document(dict(zip(names, compiled.lowered_outputs)))
            signature = [(s.name, s.dtype, s.type.shape) for s in inputs]
            from ..backends.cache import cache_key

            spec = {"hash": worker.graph_hash(document, signature, names), "graph": document,
                    "inputs": signature, "outputs": names, "key": cache_key(compiled.source)}
        self._functions[mode] = (compiled, spec)
        return compiled, spec

    # ------------------------------------------------------------------ parameters

    def _values(self, p, what: str) -> list:
        """Checked values for the parameters (read-only arrays of their dtypes), in params order."""
        n = len(self.params)
        if isinstance(p, Mapping):
            by_name = {}
            for key, value in p.items():
                name = key.name if isinstance(key, Expr) else key
                if name not in {s.name for s in self.params}:
                    raise InputError(f"Objective: {what} given for {key!r}, which is not a parameter "
                                     f"({', '.join(s.name for s in self.params)})")
                by_name[name] = value
            missing = [s.name for s in self.params if s.name not in by_name]
            if missing:
                raise InputError(f"Objective: {what} missing for {', '.join(missing)}")
            values = [by_name[s.name] for s in self.params]
        elif self._single:
            values = [p]
        else:
            if isinstance(p, np.ndarray) or not hasattr(p, "__len__") or len(p) != n:
                raise InputError(f"Objective: give the {what} as a list of {n} values in params order "
                                 f"({', '.join(s.name for s in self.params)}) or as a dict")
            values = list(p)
        checked = [coerce_input(s.name, s.type, v) for s, v in zip(self.params, values)]
        for k, value in enumerate(checked):
            if self._shapes[k] is None:
                self._shapes[k] = value.shape
            elif value.shape != tuple(self._shapes[k]):
                raise ShapeError(f"Objective: parameter {self.params[k].name!r} had shape {self._shapes[k]} "
                                 f"before, now {value.shape}")
        return checked

    @staticmethod
    def _kernel_args(values) -> list:
        # The kernel's fast path takes C-contiguous writeable arrays and Python/NumPy scalars.
        return [v[()] if v.ndim == 0 else np.array(v, order="C") for v in values]

    def _shaped(self, arrays):
        arrays = [a[()] if a.ndim == 0 else a for a in arrays]  # a scalar parameter's part: a NumPy scalar
        return arrays[0] if self._single else arrays

    def flatten(self, p) -> np.ndarray:
        """Parameter values as one float64 vector (params order, C order within each).

        It also fixes the shapes of parameters declared with ``None`` dimensions,
        which :meth:`unflatten` needs.
        """
        return np.concatenate([v.astype(np.float64).ravel() for v in self._values(p, "parameters")])

    def unflatten(self, x):
        """The parameter values a flat vector holds: one array, or a list in params order."""
        if any(s is None for s in self._shapes):
            names = [p.name for p, s in zip(self.params, self._shapes) if s is None]
            raise ShapeError(f"Objective: the shapes of {', '.join(names)} are not known yet; call flatten(p0) "
                             "(or evaluate once) first")
        x = np.asarray(x, dtype=np.float64)
        sizes = [math.prod(s) for s in self._shapes]
        if x.ndim != 1 or x.shape[0] != sum(sizes):
            raise ShapeError(f"Objective: expected a flat vector of {sum(sizes)} values, got shape {x.shape}")
        parts = np.split(x, np.cumsum(sizes)[:-1])
        return self._shaped([part.reshape(shape).astype(numpy_dtype(p.dtype))
                             for part, shape, p in zip(parts, self._shapes, self.params)])

    # ------------------------------------------------------------------ the public evaluations

    def value(self, p) -> float:
        """The loss at parameters ``p`` (a float)."""
        return float(self._evaluate("value", self._values(p, "parameters"))[0])

    def value_and_grad(self, p):
        """``(loss, gradient)`` at ``p``; the gradient is shaped like ``p`` (one array or a list)."""
        value, *grads = self._evaluate("value_and_grad", self._values(p, "parameters"))
        return float(value), self._shaped(grads)

    def hvp(self, p, v):
        """The Hessian of the loss at ``p`` times ``v`` (shaped like ``p``)."""
        values = self._values(p, "parameters")
        return self._shaped(self._evaluate("hvp", values + self._values(v, "direction")))

    def fun(self, x):
        """``(loss, flat gradient)`` at the flat vector ``x``: ``scipy.optimize.minimize(fun, x0, jac=True)``."""
        value, *grads = self._evaluate("value_and_grad", self._values(self.unflatten(x), "parameters"))
        return float(value), np.concatenate([g.ravel() for g in grads])

    def hessp(self, x, v) -> np.ndarray:
        """The Hessian at the flat vector ``x`` times the flat vector ``v``, flat (``minimize(hessp=...)``)."""
        values = self._values(self.unflatten(x), "parameters") + self._values(self.unflatten(v), "direction")
        return np.concatenate([h.ravel() for h in self._evaluate("hvp", values)])

    # ------------------------------------------------------------------ one evaluation

    def _evaluate(self, mode: str, values: list) -> list:
        if self._closed:
            raise RuntimeError("Objective: this objective is closed")
        if self.reduce == "mean" and self.rows == 0:
            raise ShapeError("Objective: reduce='mean' over data with no rows")
        if self._check_rows:
            self._check_row_sum(values[:len(self.params)])
        start = time.perf_counter()
        compiled, spec = self._function(mode)
        head = self._kernel_args(values)
        if self.local:
            t0 = time.perf_counter()
            results = [worker.run_block(compiled, head, bundle, self._slice_bytes[mode]) for bundle in self._blocks]
            info = {"where": "local", "kernel_seconds": time.perf_counter() - t0, "worker_seconds": {},
                    "rounds": 0, "recovered": 0, "cache": {}}
        else:
            results, info = self._dispatch(spec, head, self._slice_bytes[mode])
        totals = self._sum(results)
        seconds = time.perf_counter() - start
        self.evaluations += 1
        self.last_evaluation = {"mode": mode, "seconds": seconds, **info}
        self.timings.append((mode, seconds, info["kernel_seconds"]))
        if self._progress is not None:
            self._report(mode, seconds, info, totals[0])
        return totals

    @staticmethod
    def _as_tuple(out) -> tuple:
        return out if isinstance(out, tuple) else (out,)

    def _sum(self, results) -> list:
        """Block results added in block order (float64), so a partitioning always gives the same bits."""
        totals = worker.add_up(results)
        if self.reduce == "mean":
            totals = [t / self.rows for t in totals]
        return totals

    def _report(self, mode, seconds, info, value):
        where = "this process" if info["where"] == "local" else f"{len(info['worker_seconds'])} workers"
        extra = f", {info['recovered']} retry round(s) after losing workers" if info["recovered"] else ""
        if mode != "hvp":
            extra += f"  f = {float(value):.9g}"
        print(f"symdiff.distributed: eval {self.evaluations:>4} {mode:<14} {self.rows:,} rows in "
              f"{len(self.block_rows)} blocks on {where}: {1e3 * seconds:8.1f} ms (kernels "
              f"{1e3 * info['kernel_seconds']:.1f} ms){extra}", file=self._progress, flush=True)

    def _request(self, spec, head, targets, only, slice_bytes) -> dict:
        request = {"token": self._token, "version": self._version, "kernel": spec["hash"], "head": head,
                   "placement": None, "spec": None, "only": only, "slice_bytes": slice_bytes}
        for address in targets:
            version, kernels = self._sent.get(address, (None, ()))
            if version != self._version:
                request["placement"] = self._placement
            if spec["hash"] not in kernels:
                request["spec"] = spec
        return request

    def _dispatch(self, spec, head, slice_bytes):
        """Evaluate every block on the workers holding it; retry lost blocks on the survivors."""
        if self._stale:
            self._place()
        pending = set(range(len(self.block_rows)))
        results = {}
        info = {"where": "cluster", "kernel_seconds": 0.0, "worker_seconds": {}, "rounds": 0, "recovered": 0,
                "cache": {}}
        # The first round asks every worker the scheduler knows (None): a worker that is gone is not asked (asking
        # its address would retry the connection for Dask's connect timeout), and workers that joined answer, so
        # they get blocks before the next evaluation.  Retry rounds ask the workers just given the missing blocks.
        targets, only = None, None
        while pending:
            expected = list(self._placement) if targets is None else targets
            request = self._request(spec, head, expected, only, slice_bytes)
            answers = self.client.run(worker.evaluate, request, workers=targets, on_error="return")
            info["rounds"] += 1
            failed, missing, resend = [], [], []
            for address, answer in answers.items():
                if isinstance(answer, BaseException):
                    if not isinstance(answer, (OSError, TimeoutError)):  # not a lost connection: a real error
                        self._raise_worker_error(address, answer)
                    failed.append(address)
                    continue
                if address not in self._known:
                    self._stale = True  # a worker that joined: give it blocks after this evaluation
                if answer[0] == "ok":
                    for i, outputs in answer[1]:
                        if i in pending:
                            results[i] = self._as_tuple(outputs)
                            pending.discard(i)
                    info["worker_seconds"][address] = answer[2]
                    info["cache"][address] = answer[3]
                    kernels = set(self._sent.get(address, (None, set()))[1]) | {spec["hash"]}
                    self._sent[address] = (self._version, kernels)
                elif answer[0] == "need":  # it lost what it was sent (a restart at the same address)
                    self._sent.pop(address, None)
                    if address in self._placement:
                        resend.append(address)
                elif answer[0] == "missing":  # its blocks moved (Dask rebalanced or recomputed them elsewhere)
                    missing.append(address)
                elif request["placement"] is not None:  # "idle", with the placement: no need to send it again
                    self._sent[address] = (self._version, set(self._sent.get(address, (None, set()))[1]))
            failed += [w for w in expected if w not in answers and w in self._placement]
            if not pending:
                break
            if resend and not failed and not missing:
                targets = resend
                continue
            info["recovered"] += 1
            if info["recovered"] > self._retries:
                lost = ", ".join(self._describe_block(i) for i in sorted(pending))
                raise BlockLostError(f"symdiff.distributed: {lost} could not be evaluated after {self._retries} "
                                     f"retries (workers lost: {', '.join(failed) or 'none'})")
            self._recover(set(failed))
            only = sorted(pending)
            targets = sorted({w for w, items in self._placement.items() if any(i in pending for i, _ in items)})
        info["kernel_seconds"] = max(info["worker_seconds"].values(), default=0.0)
        return [results[i] for i in range(len(self.block_rows))], info

    def _recover(self, failed: set):
        """After losing workers: wait for Dask to notice, recover lost blocks, balance again."""
        _, _, distributed = dask_modules()
        deadline = time.monotonic() + min(5.0, self._recovery_timeout)
        while failed & set(self._workers()) and time.monotonic() < deadline:
            time.sleep(0.05)  # the scheduler removes a dead worker as soon as its connection drops
        for address in failed:
            self._sent.pop(address, None)
        if self._originals is not None:
            who = self._who_has()
            live = set(self._workers())
            lost = [i for i, f in enumerate(self._futures)
                    if f.status in ("cancelled", "lost", "error") or not (set(who.get(f.key, ())) & live)]
            self._scatter(lost)  # scattered blocks have no graph: send the client's copy again
        else:
            try:
                distributed.wait(self._futures, timeout=self._recovery_timeout)
            except TimeoutError:
                pass
            self._raise_for_lost(self._futures, "recomputing")
            waiting = [i for i, f in enumerate(self._futures) if f.status != "finished"]
            if waiting:
                raise BlockLostError(f"symdiff.distributed: {self._describe_block(waiting[0])} was not recomputed "
                                     f"within {self._recovery_timeout} s")
        self._place()

    # ------------------------------------------------------------------ the row-sum check

    def _sample_rows(self, rows: int = 3):
        """The first rows of the first block that has ``rows`` (or the largest), for the row-sum check."""
        sizes = self.block_rows
        i = max(range(len(sizes)), key=lambda k: (min(sizes[k], rows), -k))
        if self.local:
            return tuple(a[:rows] for a in self._blocks[i])
        return self.client.submit(worker.head_rows, self._futures[i], rows, pure=False).result()

    def _check_row_sum(self, values):
        """f(rows 0:3) == f(0:1) + f(1:3) at perturbed parameters, with the reference evaluator."""
        self._check_rows = False
        sample = self._sample or self._sample_rows()
        self._sample = None
        if sample[0].shape[0] < 2:
            return
        rng = np.random.default_rng(0)
        point = {}
        for sym, value in zip(self.params, values):
            shift = 0.1 * (1.0 + np.abs(value)) * rng.standard_normal(value.shape)
            point[sym] = (value + shift).astype(value.dtype)
        n = sample[0].shape[0]
        parts = [(0, n), (0, 1), (1, n)]
        try:
            whole, first, rest = (float(evaluate(self.loss, {**point, **{s: a[lo:hi] for s, a in
                                                                         zip(self.data_symbols, sample)}}))
                                  for lo, hi in parts)
        except Exception as exc:
            raise NotARowSumError(f"Objective: checking that the loss adds up over rows (rows 0:1 + 1:{n} "
                                  f"against 0:{n}) failed: {exc}; pass check_rows=False to skip the check") from exc
        if not all(math.isfinite(v) for v in (whole, first, rest)):
            return
        rtol = 1e-9 if self.loss.dtype == "float64" else 1e-4
        if abs(whole - (first + rest)) > rtol * (abs(whole) + abs(first) + abs(rest)) + 1e-300:
            raise NotARowSumError(
                f"Objective: the loss is not a sum over rows: on rows 0:{n} it is {whole!r}, but rows 0:1 give "
                f"{first!r} and rows 1:{n} give {rest!r}.  Block results are added up, so write the loss as a "
                "sum of per-row terms (reduce='mean' divides by the row count) and add any penalty on the "
                "parameters outside the Objective (docs/distributed.md); check_rows=False skips this check")

    # ------------------------------------------------------------------ lifetime

    def close(self):
        """Release the blocks and, when the Objective started it, the cluster."""
        self._closed = True
        self.client = None
        self._futures = []
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        where = "closed" if self._closed else ("in this process" if self.local else
                                               f"on {len(self._placement or {})} workers")
        return (f"<symdiff.distributed.Objective: {self.rows:,} rows in {len(self.block_rows)} blocks "
                f"({self.nbytes / 2**20:.1f} MiB) {where}, reduce={self.reduce!r}>")
