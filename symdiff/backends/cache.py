"""The on-disk kernel cache.

Layout: ``<cache dir>/sd_<key>.py`` holds a kernel's generated source, and Numba's
own cache (``cache=True``) keeps the compiled code next to it in
``<cache dir>/__pycache__/sd_<key>.kernel-*.nbi/.nbc``.  The key is a SHA-256 of the
source without comments (which contains the dtypes and ranks in its signature),
the Numba, llvmlite, NumPy and Python versions, and ``CODEGEN_VERSION``.  The cache
directory is ``$SYMDIFF_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/symdiff`` or
``~/.cache/symdiff``.

A source file is written once (atomically) and never rewritten, so Numba's index,
which is stamped with the file's modification time, stays valid.  If the directory
cannot be written, or loading fails (a corrupt or truncated cache file), the kernel
is compiled in memory instead, with one warning per process; a corrupt entry is
deleted so the next process rebuilds it.  In one process, building the same
function twice reuses the loaded kernel.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import sys
import tempfile
import threading
import warnings

CODEGEN_VERSION = "3"  # bump when generated code or the IR emitted for the same source changes

# Kernels call NumPy ufuncs in object-mode blocks, which hold the GIL; Numba warns about
# that (with nogil=True) on every compile, including the first call.  Expected: silence it.
warnings.filterwarnings("ignore", message="Code running in object mode won't allow parallel execution")

_lock = threading.Lock()
_warned = False
_in_memory: dict = {}


class CacheWarning(UserWarning):
    """The kernel cache could not be used; the kernel was compiled in memory."""


def cache_dir() -> str:
    """Where kernels are cached (``SYMDIFF_CACHE_DIR`` overrides the default).

    >>> os.path.isabs(cache_dir()) or "SYMDIFF_CACHE_DIR" in os.environ
    True
    """
    explicit = os.environ.get("SYMDIFF_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "symdiff")


def _strip_comments(source: str) -> str:
    return "\n".join(re.sub(r"\s*#.*$", "", line) for line in source.splitlines() if line.strip())


@functools.lru_cache(maxsize=None)
def _backend_fingerprint() -> str:
    """A hash of the backend's own code: IR regions and runtime helpers are compiled
    into cached kernels without appearing in their source, so a changed backend
    must not load kernels an older one built."""
    digest = hashlib.sha256()
    folder = os.path.dirname(os.path.abspath(__file__))
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()[:16]


def cache_key(source: str) -> str:
    """The hash naming a kernel: its source (comments aside) and the tool versions.

    >>> cache_key("x = 1  # one") == cache_key("x = 1  # uno") != cache_key("x = 2")
    True
    """
    import llvmlite
    import numba
    import numpy

    from .runtime import BLAS_CACHE_TAG  # which gemm (NumPy's BLAS, SciPy's, loops) and its ABI: different code

    versions = (f"{CODEGEN_VERSION}|{_backend_fingerprint()}|{numba.__version__}|{llvmlite.__version__}|"
                f"{numpy.__version__}|{sys.version_info[:2]}|blas={BLAS_CACHE_TAG}")
    return hashlib.sha256((versions + "\n" + _strip_comments(source)).encode()).hexdigest()[:40]


def _warn_once(message: str):
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(message + "; compiling in memory (this process will not warn again)", CacheWarning,
                      stacklevel=4)


def _compile_in_memory(source: str, name: str):
    namespace = {"_SD_CACHE": False, "__name__": f"symdiff_kernel_memory_{name}"}
    exec(compile(source, f"<symdiff kernel {name}>", "exec"), namespace)
    return namespace


def _import_file(path: str, module_name: str):
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    module._SD_CACHE = True
    sys.modules[module_name] = module  # Numba's cache re-imports the module by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module.__dict__


def _write_once(path: str, source: str):
    """Write ``source`` to ``path`` unless it already holds exactly that."""
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == source:
                return
    except OSError:
        pass
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(source)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _delete_entry(directory: str, stem: str):
    pycache = os.path.join(directory, "__pycache__")
    try:
        for name in os.listdir(pycache):
            if name.startswith(stem + "."):
                os.unlink(os.path.join(pycache, name))
    except OSError:
        pass


def load(source: str, kernel_name: str = "kernel"):
    """The compiled kernel for ``source`` and how it was obtained:
    "memory" (built before in this process), "hit" (loaded from disk), "miss"
    (compiled and stored), or "uncached" (compiled in memory after a cache problem).

    >>> import symdiff as sd
    >>> x = sd.scalar("x")
    >>> kernel, status = load(sd.function([x], x * 2).source)
    >>> kernel(3.0), status
    (6.0, 'memory')
    """
    key = cache_key(source)
    with _lock:
        if key in _in_memory:
            return _in_memory[key], "memory"
        stem = f"sd_{key}"
        directory = cache_dir()
        path = os.path.join(directory, stem + ".py")
        module_name = f"symdiff_kernel_{key}"
        namespace, status = None, "uncached"
        try:
            os.makedirs(directory, exist_ok=True)
            _write_once(path, source)
        except OSError as exc:
            _warn_once(f"symdiff: cannot write the kernel cache in {directory!r} ({exc})")
        else:
            from numba.core.errors import NumbaError

            for attempt in range(2):
                try:
                    namespace = _import_file(path, module_name)
                    break
                except NumbaError as exc:  # the kernel itself does not compile: not a cache problem
                    from .lowering import LoweringError

                    raise LoweringError(
                        f"internal error: the generated kernel does not compile ({type(exc).__name__}); "
                        f"please report it with its source, {path}"
                    ) from exc
                except Exception as exc:  # a corrupt or unreadable cache entry
                    _delete_entry(directory, stem)
                    if attempt == 1:
                        _warn_once(f"symdiff: the kernel cache entry {path!r} could not be loaded ({exc!r})")
        if namespace is None:
            namespace = _compile_in_memory(source, key)
        kernel = namespace[kernel_name]
        if namespace.get("_SD_CACHE"):
            status = "hit" if sum(kernel.stats.cache_hits.values()) else "miss"
        _in_memory[key] = kernel
        return kernel, status
