"""The worker side of ``sd.distributed``: what runs inside each Dask worker process.

The client calls :func:`evaluate` on every worker with ``Client.run`` (one call per
evaluation, answered directly by the worker; no task goes through the scheduler's
task graph).  A call carries only the objective's token, the parameters (and the
HVP direction), the hash of the kernel and the version of the block placement.
The worker keeps, between calls:

- ``_FUNCTIONS``: compiled functions by graph hash.  A function is rebuilt from the
  graph's JSON (``sd.from_json``) the first time, and its kernel is loaded from the
  on-disk cache the client filled when they share one, under a file lock so that
  several workers compiling the same kernel for the first time take turns
  (Numba's cache is not safe against concurrent writers: numba#4807).
- ``_PLACEMENTS``: for each objective, the version of the placement it last received
  and its own share of it: ``[(block index, Dask key), ...]``.

When either is missing the worker answers ``("need", what)`` and the client sends it
again; the blocks themselves are read from the worker's own memory
(``dask_worker.data``), so they never travel.

This module imports no Dask (the worker already has it loaded) and no Numba until a
kernel is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["evaluate", "preload", "install", "forget", "build_function", "file_lock"]

_FUNCTIONS: dict = {}  # graph hash -> (compiled function, how its kernel was obtained)
_PLACEMENTS: dict = {}  # (objective token, worker address) -> (placement version, [(block index, key), ...])
# (keyed by address too: the workers of a LocalCluster(processes=False) share this module)
_BUILD_LOCK = threading.Lock()  # one build at a time in this process
_EXECUTORS: dict = {}  # thread count -> executor running the kernels off the event loop


def _executor(threads: int) -> ThreadPoolExecutor:
    # Kernels release the GIL (nogil=True), so a worker with n threads runs n blocks at once;
    # they run off the worker's event loop so heartbeats and data transfers go on meanwhile.
    pool = _EXECUTORS.get(threads)
    if pool is None:
        pool = _EXECUTORS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="symdiff-kernel")
    return pool


@contextlib.contextmanager
def file_lock(path: str, timeout: float = 600.0):
    """Hold an exclusive lock on ``path`` (created if needed) across processes.

    If the lock file cannot be created (a read-only cache directory, where nothing
    will be written either), the block runs without it.

    >>> import tempfile, os
    >>> with file_lock(os.path.join(tempfile.mkdtemp(), "demo.lock")):
    ...     print("held")
    held
    """
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        handle = open(path, "a+b")
    except OSError:
        yield
        return
    try:
        try:
            import fcntl
        except ImportError:  # Windows: msvcrt locks a byte range instead
            import msvcrt

            deadline = time.monotonic() + timeout
            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"symdiff.distributed: could not lock {path} in {timeout} s") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def graph_hash(document: str, inputs: list, outputs: list) -> str:
    """The key a compiled function is known by on every worker.

    >>> signature = [("x", "float64", (None,))]
    >>> graph_hash("{}", signature, ["out0"]) == graph_hash("{}", signature, ["out0"]) != graph_hash("{}", [], [])
    True
    """
    text = repr((document, [tuple(map(str, spec)) for spec in inputs], list(outputs)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def build_function(spec: dict):
    """The compiled function a kernel spec describes, rebuilt from its JSON graph.

    ``spec``: ``{"hash", "graph" (sd.to_json text of the graph the client lowered, after
    its rewrites, nodes listed in the client's creation order), "inputs" [(name, dtype,
    shape)], "outputs" [output names in the graph]}``.  The graph is lowered as it is
    (no rewrites), so the generated source, and therefore the cache key, is the
    client's: a shared cache directory makes this a load rather than a compile.
    Returns ``(function, cache status)``.

    >>> import symdiff as sd
    >>> x = sd.vector("x")
    >>> doc = sd.to_json({"out0": sd.sum(x * x)}, optimize=False)
    >>> spec = {"hash": "demo", "graph": doc, "inputs": [("x", "float64", (None,))], "outputs": ["out0"]}
    >>> f, status = build_function(spec)
    >>> f([1.0, 2.0]), status.split()[0] in ("hit", "miss", "memory", "uncached")
    ((5.0,), True)
    """
    import symdiff as sd
    from symdiff.backends.cache import cache_dir, cache_key
    from symdiff.backends.numba_backend import NumbaFunction

    with _BUILD_LOCK:
        known = _FUNCTIONS.get(spec["hash"])
        if known is not None:
            return known[0], "memory"
        outputs, order = _rebuild(spec["graph"], spec["outputs"])
        inputs = [sd.tensor(name, tuple(shape), dtype) for name, dtype, shape in spec["inputs"]]
        with file_lock(os.path.join(cache_dir(), f".distributed-{spec['hash']}.lock")):
            # The client's rewritten graph, as it is, lowered in the client's node order: nodes an earlier
            # graph already made here have other ids, and the generated names would follow those.
            function = NumbaFunction(inputs, outputs, outputs, False, node_order=order)
        status = function.cache_status
        if spec.get("key") not in (None, cache_key(function.source)):
            status += " (own source)"  # not expected; the kernel is compiled here then
        _FUNCTIONS[spec["hash"]] = (function, status)
        return function, status


def _rebuild(document: str, names: list) -> tuple:
    """The outputs ``names`` of a graph document, every node given the client's origin, and
    the client's order of the nodes (this process's node id -> place in the document, which
    lists them in the order the client created them).

    The kernel's comments quote each node's origin (the user's file:line); with the
    client's origins the generated source is byte for byte the client's, so the
    cached kernel file the client wrote is not rewritten, and Numba's cache entry,
    stamped with a hash of that file, stays valid.
    """
    import json

    import symdiff as sd

    document = json.loads(document)
    records = document["nodes"]
    position = {entry["name"]: entry["node"] for entry in document["outputs"]}
    document["outputs"] = [{"name": str(record["id"]), "node": record["id"]} for record in records]
    built = sd.from_json(document)  # every node by its record, so origins pair up exactly
    for record in records:
        if "origin" in record:
            built[str(record["id"])].origin = (record["origin"][0], record["origin"][1])
    order = {built[str(record["id"])].id: k for k, record in enumerate(records)}
    return [built[str(position[name])] for name in names], order


# A block is evaluated in slices of rows holding about this many bytes of data.  A kernel
# reads its data more than once (the gradient's X.T @ r reads X again after X @ w); a slice
# that stays in the core's cache between the reads makes the logistic value+gradient 2.5x
# faster than whole 250k-row blocks (docs/distributed.md, "Slices"; flat from 0.5 to 8 MiB).
SLICE_BYTES = 2**20


def run_block(function, head: tuple, bundle: tuple, slice_bytes: int = SLICE_BYTES) -> tuple:
    """The outputs of ``function(*head, *bundle)`` as a tuple, computed in slices of rows
    holding about ``slice_bytes`` bytes (at least 256 rows; 0: the whole block at once).
    Each output is a sum over rows, so slices add up (float64 totals, added in row order)."""
    rows = bundle[0].shape[0]
    row_bytes = sum(array.itemsize * (array.size // rows) for array in bundle) if rows else 0
    step = max(256, slice_bytes // max(row_bytes, 1)) if slice_bytes else rows
    if rows <= step:
        out = function(*head, *bundle)
        return out if isinstance(out, tuple) else (out,)
    return tuple(add_up(function(*head, *(array[start:start + step] for array in bundle))
                        for start in range(0, rows, step)))


def add_up(results) -> list:
    """Output-wise totals of ``results`` (each a tuple of outputs, or one output), in float64,
    added in the order given: a fixed order gives the same bits every time."""
    totals = None
    for out in results:
        out = out if isinstance(out, tuple) else (out,)
        if totals is None:
            totals = [np.array(o, dtype=np.float64) for o in out]
        else:
            for total, o in zip(totals, out):
                total += o
    return totals


_KEEPING = [0]  # evaluations running with the threshold raised (objectives may share a worker)
_KEEPING_LOCK = threading.Lock()


@contextlib.contextmanager
def keep_freed_memory():
    """Let freed memory stay in the process during an evaluation, then return it.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, so glibc hands
    freed memory back to the OS as soon as 64 KiB of it is free at the top of the heap.
    A kernel allocates its temporaries anew for every slice, so each slice then faults
    its pages in again: on a 2-worker LocalCluster the logistic value+gradient over 2M
    rows per worker took 84-91 ms with that setting and 50-56 ms with the threshold
    raised while the kernels run.  Afterwards the worker's own setting is restored and
    ``malloc_trim`` returns what is free, as Dask intends.  Nothing changes where the
    variable is unset or the C library is not glibc."""
    setting = os.environ.get("MALLOC_TRIM_THRESHOLD_", "")
    libc = _glibc() if setting.isdigit() else None
    if libc is None:
        yield
        return
    from symdiff.backends.runtime import M_TRIM_THRESHOLD

    with _KEEPING_LOCK:
        _KEEPING[0] += 1
        if _KEEPING[0] == 1:
            libc.mallopt(M_TRIM_THRESHOLD, 2**30)
    try:
        yield
    finally:
        with _KEEPING_LOCK:
            _KEEPING[0] -= 1
            if not _KEEPING[0]:
                libc.mallopt(M_TRIM_THRESHOLD, int(setting))
                libc.malloc_trim(0)


@functools.lru_cache(maxsize=None)
def _glibc():
    """glibc's mallopt and malloc_trim (``runtime.libc_function``), or None elsewhere."""
    import ctypes
    from types import SimpleNamespace

    from symdiff.backends.runtime import libc_function  # the kernels have loaded the backend already

    mallopt, trim = libc_function("mallopt", [ctypes.c_int, ctypes.c_int]), libc_function("malloc_trim", [ctypes.c_size_t])
    return None if mallopt is None or trim is None else SimpleNamespace(mallopt=mallopt, malloc_trim=trim)


def _run_blocks(function, head: tuple, blocks: list, slice_bytes: int) -> tuple:
    """Each block's outputs (as a tuple), and the seconds the loop took.  An error is
    marked with the block's index (``block_index``), which the client names."""
    start = time.perf_counter()
    results = []
    for index, bundle in blocks:
        try:
            results.append((index, run_block(function, head, bundle, slice_bytes)))
        except Exception as exc:
            exc.block_index = index
            raise
    return results, time.perf_counter() - start


async def evaluate(request: dict, dask_worker=None):
    """Run one evaluation over this worker's resident blocks (called through ``Client.run``).

    ``request``: ``{"token", "version", "placement" (or None), "kernel" (hash),
    "spec" (or None), "head" (parameter values, then HVP directions)}``.
    Answers ``("ok", [(block index, outputs)], kernel seconds, how the kernel was obtained)``,
    ``("need", ["placement" and/or "spec"])``, ``("missing", [block indices])`` when
    blocks it was told it holds are not in its memory, or ``("idle",)`` when the
    placement gives it no block.
    """
    address = dask_worker.address
    token = request["token"]
    need = []
    if request.get("placement") is not None:
        _PLACEMENTS[token, address] = (request["version"], request["placement"].get(address, []))
    known = _PLACEMENTS.get((token, address))
    if known is None or known[0] != request["version"]:
        need.append("placement")
    spec = request.get("spec")
    if request["kernel"] not in _FUNCTIONS and spec is None:
        need.append("spec")
    if need:
        return ("need", need)
    mine = known[1]
    if request.get("only") is not None:  # a retry: only the blocks still missing
        wanted = set(request["only"])
        mine = [(index, key) for index, key in mine if index in wanted]
    if not mine:
        return ("idle",)
    # Read the blocks on the event loop (the worker's data store is not thread-safe), run off it.
    data = dask_worker.data
    missing = [index for index, key in mine if key not in data]
    if missing:
        return ("missing", missing)
    blocks = [(index, data[key]) for index, key in mine]
    loop = asyncio.get_running_loop()
    threads = max(1, min(getattr(dask_worker.state, "nthreads", 1), len(blocks)))
    pool = _executor(threads)
    if request["kernel"] not in _FUNCTIONS:
        await loop.run_in_executor(pool, build_function, spec)
    function, status = _FUNCTIONS[request["kernel"]]  # status: how this worker got the kernel
    head, slice_bytes = tuple(request["head"]), request.get("slice_bytes", SLICE_BYTES)
    start = time.perf_counter()
    with keep_freed_memory():
        if threads == 1:
            results, _ = await loop.run_in_executor(pool, _run_blocks, function, head, blocks, slice_bytes)
        else:
            shares = [blocks[k::threads] for k in range(threads)]
            parts = await asyncio.gather(*(loop.run_in_executor(pool, _run_blocks, function, head, share, slice_bytes)
                                           for share in shares))
            results = sorted((item for part, _ in parts for item in part), key=lambda item: item[0])
    seconds = time.perf_counter() - start
    return ("ok", results, seconds, status)


def _import_backend():
    import symdiff.backends.numba_backend  # noqa: F401  (Numba, llvmlite and the kernels' runtime)


async def preload(dask_worker=None):
    """Import the Numba backend in the background (``Client.run(..., wait=False)``), so the
    first evaluation on this worker loads only its kernel."""
    await asyncio.get_running_loop().run_in_executor(_executor(1), _import_backend)


async def install(spec: dict, dask_worker=None):
    """Build a kernel spec's function in the background (``Client.run(..., wait=False)``), so the
    first evaluation that needs it finds it in memory."""
    await asyncio.get_running_loop().run_in_executor(_executor(1), build_function, spec)


def forget(token: str, dask_worker=None):
    """Drop an objective's placement (its kernels stay: other objectives may share them)."""
    _PLACEMENTS.pop((token, dask_worker.address if dask_worker is not None else None), None)
    return True


def head_rows(bundle: tuple, rows: int) -> tuple:
    """The first ``rows`` rows of every array of a block (a task, for the row-sum check)."""
    return tuple(np.array(array[:rows]) for array in bundle)


def bundle_rows(bundle: tuple) -> int:
    """How many rows a block has (a task, for Dask arrays with unknown chunk sizes)."""
    return int(bundle[0].shape[0])


def make_bundle(dtypes: tuple, *blocks) -> tuple:
    """One block of every data array as writeable C-contiguous arrays of the symbols' dtypes (a
    task): a read-only block (a memory map, np.frombuffer) would make every kernel call copy it."""
    arrays = [np.ascontiguousarray(block, dtype=dtype) for block, dtype in zip(blocks, dtypes)]
    return tuple(array if array.flags.writeable else array.copy() for array in arrays)


def same_bundle(bundle: tuple) -> tuple:
    """A block unchanged: run where it should live, this task moves it there."""
    return bundle
