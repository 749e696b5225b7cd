"""The on-disk kernel cache, and why it can be trusted.

Layout: ``<cache dir>/sd_<key>.py`` holds a kernel's generated source; Numba's own
cache (``cache=True``) keeps the compiled code next to it in
``<cache dir>/__pycache__/sd_<key>.kernel-*.nbi/.nbc``; ``<cache dir>/sd_<key>.sha256``
lists a SHA-256 of each of those compiled files.  The key is a SHA-256 of the source
without comments (which contains the dtypes and ranks in its signature), the Numba,
llvmlite, NumPy and Python versions, the backend's own code and ``CODEGEN_VERSION``.
The cache directory is ``$SYMDIFF_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/symdiff``
or ``~/.cache/symdiff``; kernels are written there and nowhere else (never to Numba's
fallback ``$XDG_CACHE_HOME/numba`` or ``$NUMBA_CACHE_DIR``).

Trust model.  Loading a cached kernel runs code: Numba unpickles its files, and a
crafted file can run anything.  So the cache is trusted exactly as much as the
user's own files, and no more:

* the directory is created with mode 0700; a cache directory, ``__pycache__`` or
  entry that another user owns, or that the group or others may write (and reach),
  is refused (one warning; kernels are then compiled in memory), since whoever can
  write it can run code in every process that loads from it;
* the checksums detect damage (a disk error, a truncated or half-written file, a
  byte flipped in place), which would otherwise crash the process inside Numba
  (SIGSEGV) before anything could remove the entry: a file that does not match is
  deleted and the kernel rebuilt in the cache, with a warning for that entry.  They are not a signature:
  anyone who can write the directory can write the checksums too, which is why
  the permissions above are checked.  Compiled files with no checksum (a process
  that died between Numba's write and ours) are deleted and rebuilt.

A source file is written once (atomically) and never rewritten unless damaged, so
Numba's index, which is stamped with the file, stays valid.  If the directory
cannot be used, or loading fails, the kernel is compiled in memory instead, with
one warning per process.  Concurrent processes building the same kernel take a
lock on the entry, so one compiles and the other loads.  In one process, building
the same function twice reuses the loaded kernel.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import re
import stat
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
_loading: set = set()  # absolute paths of kernel sources being imported (for the locator)


class CacheWarning(UserWarning):
    """The kernel cache could not be used; the kernel was compiled in memory."""


class _Refused(Exception):
    """The cache directory or an entry fails the trust checks, or cannot be written."""


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


# Modules outside this folder whose functions Numba compiles into kernels (paths from
# the package root): the scalar algorithms both backends share.
KERNEL_SOURCES = ("ops/special_scalar.py", "ops/precise_log.py")


def fingerprinted_files() -> list:
    """Every file whose code ends up in a cached kernel without appearing in its source.

    >>> any(path.endswith("special_scalar.py") for path in fingerprinted_files())
    True
    """
    folder = os.path.dirname(os.path.abspath(__file__))
    package = os.path.dirname(folder)
    files = [os.path.join(folder, name) for name in sorted(os.listdir(folder)) if name.endswith(".py")]
    return files + [os.path.join(package, *path.split("/")) for path in KERNEL_SOURCES]


@functools.lru_cache(maxsize=None)
def _backend_fingerprint() -> str:
    """A hash of the code compiled into cached kernels besides their source (IR regions,
    runtime helpers, ``KERNEL_SOURCES``), so a changed backend never loads kernels an
    older one built."""
    digest = hashlib.sha256()
    for path in fingerprinted_files():
        with open(path, "rb") as handle:
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
    """The cache cannot be used: this kernel is compiled in memory.  Said once per process,
    since every later kernel would meet the same directory and say the same."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(message + "; compiling in memory (later kernels of this process that cannot use the "
                      "cache will not warn again)", CacheWarning, stacklevel=4)


def _warn_rebuilt(message: str):
    """A damaged entry was deleted and is being rebuilt in the cache: said for each entry,
    and not counted against ``_warn_once`` (the cache itself works)."""
    warnings.warn(message, CacheWarning, stacklevel=4)


# ------------------------------------------------------------------ trust checks


def _check_private(path: str, what: str, inside: str = None):
    """Refuse ``path`` unless this user owns it and nobody else may write it.

    For something ``inside`` a directory already checked, write permission for the
    group or others matters only if they may enter that directory: files Numba
    writes under a umask of 002 are group-writable, and harmless in a 0700 directory.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise _Refused(f"cannot inspect the {what} {path!r} ({exc})") from None
    getuid = getattr(os, "getuid", None)
    if getuid is not None and info.st_uid != getuid():
        raise _Refused(f"the {what} {path!r} belongs to another user (uid {info.st_uid}), and loading "
                       "from it would run their code")
    writers = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if inside is not None and writers:
        entry = os.stat(inside).st_mode
        writers &= (stat.S_IWGRP if entry & stat.S_IXGRP else 0) | (stat.S_IWOTH if entry & stat.S_IXOTH else 0)
    if writers and os.name != "nt":
        raise _Refused(f"the {what} {path!r} may be written by other users (mode {stat.S_IMODE(info.st_mode):o}), "
                       f"and loading from it would run their code; make it private: chmod 700 {path!r}")


def _private_directory(path: str, what: str, inside: str = None):
    """Create ``path`` with mode 0700 if it is missing, then apply the trust checks."""
    if not os.path.isdir(path):
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise _Refused(f"cannot create the {what} {path!r} ({exc})") from None
    _check_private(path, what, inside)
    if not os.access(path, os.W_OK | os.X_OK):
        raise _Refused(f"the {what} {path!r} is not writable")


# ---------------------------------------------------------------- the entry files


def _entry_files(directory: str, stem: str, numba_only: bool = True) -> list:
    """Numba's compiled files for the entry ``stem`` (index and data), by path; with
    ``numba_only=False`` also Python's bytecode of the kernel's module.

    The checksums cover Numba's files only: Python writes ``sd_<key>.cpython-311.pyc``
    beside them when a process imports the module with bytecode writing on (and another
    Python version writes its own), so counting it turned a healthy entry into a
    "damaged" one, rebuilt with a warning, whenever that setting or the Python changed."""
    pycache = os.path.join(directory, "__pycache__")
    try:
        names = sorted(os.listdir(pycache))
    except OSError:
        return []
    return [os.path.join(pycache, name) for name in names
            if name.startswith(stem + ".") and (not numba_only or name.endswith((".nbi", ".nbc")))]


def _digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _delete_entry(directory: str, stem: str):
    for path in _entry_files(directory, stem, numba_only=False) + [os.path.join(directory, stem + ".sha256")]:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _verify_entry(directory: str, stem: str) -> bool:
    """Check the entry's compiled files against its checksums before Numba reads them.

    Returns False (after deleting them) when they do not match, so the kernel is
    rebuilt; compiled files without checksums are deleted silently (a process died
    between Numba's write and ours, or an older symdiff wrote them).
    """
    files = _entry_files(directory, stem)
    manifest = os.path.join(directory, stem + ".sha256")
    pycache = os.path.join(directory, "__pycache__")
    for path in files:
        _check_private(path, "cache entry", inside=pycache)
    if os.path.exists(manifest):
        _check_private(manifest, "cache entry", inside=directory)
    if not files:
        with contextlib.suppress(OSError):
            os.unlink(manifest)
        return True
    try:
        with open(manifest, encoding="utf-8") as handle:
            recorded = json.load(handle)
    except (OSError, ValueError):
        _delete_entry(directory, stem)
        return True
    present = {os.path.basename(path): path for path in files}
    if not isinstance(recorded, dict) or set(recorded) != set(present) or any(
            _digest(present[name]) != recorded[name] for name in present):
        _delete_entry(directory, stem)
        return False
    return True


def _record_entry(directory: str, stem: str):
    """Write the checksums of the entry's compiled files (atomically)."""
    sums = {os.path.basename(path): _digest(path) for path in _entry_files(directory, stem)}
    if sums:
        _write_atomically(os.path.join(directory, stem + ".sha256"), json.dumps(sums, sort_keys=True))


def _write_atomically(path: str, text: str):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_once(path: str, source: str):
    """Write ``source`` to ``path`` unless it already holds exactly that."""
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == source:
                return
    except (OSError, UnicodeDecodeError):
        pass
    _write_atomically(path, source)


@contextlib.contextmanager
def _entry_lock(directory: str, stem: str):
    """An exclusive lock on one entry across processes (where the OS has flock)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the worst case is two compiles of the same kernel
        yield
        return
    fd = os.open(os.path.join(directory, stem + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# ------------------------------------------------------- where Numba writes them


@functools.lru_cache(maxsize=None)
def _install_locator():
    """Put a cache locator first in Numba's list that claims the kernels of this
    module and nothing else: their compiled files go to ``<cache dir>/__pycache__``
    or nowhere.  Numba's own locators would fall back to ``$XDG_CACHE_HOME/numba``
    when that directory cannot be written, and honour ``$NUMBA_CACHE_DIR``."""
    from numba.core import caching

    in_tree = getattr(caching, "InTreeCacheLocator", None) or getattr(caching, "_InTreeCacheLocator")

    class KernelCacheLocator(in_tree):
        @classmethod
        def from_function(cls, py_func, py_file):
            if os.path.abspath(py_file) not in _loading:
                return None
            locator = cls(py_func, py_file)
            locator.ensure_cache_path()  # an OSError stops the import: no fallback location
            return locator

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")
    impl._locator_classes = [KernelCacheLocator] + [c for c in impl._locator_classes
                                                    if c.__name__ != "KernelCacheLocator"]
    return KernelCacheLocator


@contextlib.contextmanager
def _no_registry_refresh_on_cache_hits():
    """While a kernel module is imported, Numba loads a cached kernel without first calling
    ``target_context.refresh()``.  That call installs every typing and lowering registry
    (it imports most of ``numba.np`` and ``numba.cpython``): 60-90 ms of a 0.18 s warm start
    of the MLP, and nothing a cached kernel needs, since loading one only links its object
    code (``CompileResult._rebuild``: the codegen, ``get_executable``, the environment).
    A miss compiles as before: Numba's compiler refreshes both contexts itself
    (``CompilerBase.__init__``), as does every later compile in the process.  Numba's own
    method is put back on exit; on a Numba without these names nothing is changed (the
    cost is the refresh again, not an error)."""
    from numba.core import caching

    try:
        from numba.core.runtime import rtsys
    except ImportError:
        rtsys = None
    cache_class = getattr(caching, "Cache", None)
    original = getattr(cache_class, "load_overload", None)
    if original is None or rtsys is None or not hasattr(cache_class, "_load_overload") \
            or not hasattr(cache_class, "_guard_against_spurious_io_errors"):
        yield
        return

    def load_overload(self, sig, target_context):
        rtsys.initialize(target_context)  # the memory allocator's tables, which refresh() fills first
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    cache_class.load_overload = load_overload
    try:
        yield
    finally:
        cache_class.load_overload = original


def _compile_in_memory(source: str, name: str):
    namespace = {"_SD_CACHE": False, "__name__": f"symdiff_kernel_memory_{name}"}
    exec(compile(source, f"<symdiff kernel {name}>", "exec"), namespace)
    return namespace


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Imports a kernel module from its source, never from ``__pycache__``'s bytecode:
    a damaged ``.pyc`` beside Numba's files was run as it stood (Numba missed its cache
    for the changed code and compiled the damage, so every later process loaded a wrong
    kernel with matching checksums), and a ``.pyc`` is one more file to trust.  Compiling
    the source costs 1.5 ms for the MLP's kernel (8.9 KB)."""

    def get_code(self, fullname):
        return compile(self.get_data(self.path), self.path, "exec", dont_inherit=True)


def _import_file(path: str, module_name: str):
    from numba.core import config

    _install_locator()
    spec = importlib.util.spec_from_file_location(module_name, path, loader=_SourceOnlyLoader(module_name, path))
    module = importlib.util.module_from_spec(spec)
    module._SD_CACHE = True
    sys.modules[module_name] = module  # Numba's cache re-imports the module by name
    _loading.add(os.path.abspath(path))
    overridden = getattr(config, "CACHE_LOCATOR_CLASSES", None)
    if overridden:  # $NUMBA_CACHE_LOCATOR_CLASSES would bypass our locator
        config.CACHE_LOCATOR_CLASSES = ""
    try:
        with _no_registry_refresh_on_cache_hits():
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    finally:
        _loading.discard(os.path.abspath(path))
        if overridden:
            config.CACHE_LOCATOR_CLASSES = overridden
    return module.__dict__


def load_program(program):
    """``load`` for a lowered program: its kernel, how it was obtained, and its hidden
    constant arguments as writable C-contiguous copies (constants are stored read-only; the
    kernel's signature takes writable arrays, and it never writes them)."""
    import numpy as np

    kernel, status = load(program.source, program.kernel_name)
    return kernel, status, tuple(np.array(array, order="C") for array in program.hidden)


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
        namespace = None
        try:
            _private_directory(directory, "kernel cache directory")
            _private_directory(os.path.join(directory, "__pycache__"), "kernel cache directory", inside=directory)
            with _entry_lock(directory, stem):
                namespace = _load_entry(source, directory, stem, path, f"symdiff_kernel_{key}", kernel_name)
        except _Refused as exc:
            _warn_once(f"symdiff: not using the kernel cache: {exc}")
        except OSError as exc:
            _warn_once(f"symdiff: cannot use the kernel cache in {directory!r} ({exc})")
        status = "uncached"
        if namespace is None:
            namespace = _compile_in_memory(source, key)
        kernel = namespace[kernel_name]
        if namespace.get("_SD_CACHE"):
            status = "hit" if sum(kernel.stats.cache_hits.values()) else "miss"
        _in_memory[key] = kernel
        return kernel, status


def _load_entry(source: str, directory: str, stem: str, path: str, module_name: str, kernel_name: str):
    """Verify, import (Numba loads or compiles and stores), and record the checksums.
    None when the entry cannot be used (after one warning)."""
    from numba.core.errors import NumbaError

    if os.path.exists(path):
        _check_private(path, "cache entry", inside=directory)
    _write_once(path, source)
    if not _verify_entry(directory, stem):
        _warn_rebuilt(f"symdiff: the cached kernel {stem} in {directory!r} did not match its checksums "
                      "(a damaged file); it was deleted and is being rebuilt in the cache")
    for attempt in range(2):
        try:
            namespace = _import_file(path, module_name)
        except NumbaError as exc:  # the kernel itself does not compile: not a cache problem
            from .lowering import LoweringError

            raise LoweringError(
                f"internal error: the generated kernel does not compile ({type(exc).__name__}); "
                f"please report it with its source, {path}"
            ) from exc
        except OSError as exc:  # no usable __pycache__ (the locator refuses to fall back)
            raise _Refused(f"cannot write compiled kernels to {os.path.join(directory, '__pycache__')!r} "
                           f"({exc})") from None
        except Exception as exc:  # an entry that passed its checksums and still failed to load
            _delete_entry(directory, stem)
            if attempt == 1:
                _warn_once(f"symdiff: the kernel cache entry {path!r} could not be loaded ({exc!r})")
                return None
            continue
        kernel = namespace.get(kernel_name)
        if kernel is None or not sum(kernel.stats.cache_hits.values()):
            _record_entry(directory, stem)  # compiled now: checksum what Numba just wrote
        return namespace
    return None
