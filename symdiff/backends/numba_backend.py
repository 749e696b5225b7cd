"""``NumbaFunction``: the callable ``sd.function(..., backend="numba")`` returns.

The call path is one generated Python function per compiled function,
``__call__(self, x, W, ...)``, whose body is ``return kernel(x, W, ...)`` inside a
``try``: Numba's dispatcher checks the argument types (dtype, rank, C order) and
the kernel checks every size at its top, so a good call does no Python work of its
own.  A call that fails either check, or passes values that need converting
(lists, float32 for a float64 input, strided or read-only arrays), takes the slow
path: each value is checked and converted by the reference evaluator's rules
(``symdiff.evaluate.coerce_input``), which raises TypeError/ValueError naming the
input; disagreeing run-time sizes raise a ShapeError naming the inputs and sizes.

Casting policy: the NumPy backend's, enforced by the same function
(``symdiff.evaluate.coerce_input``).  Numba's dispatcher would convert a scalar it
is handed to the kernel's type whatever it is (``np.uint64(3)`` or ``2**64 - 1`` for
an int64 input wraps, ``np.float64`` or ``1e300`` for a float32 input rounds or
overflows), so a scalar input takes the fast path only when its type is one the
policy accepts unchanged (checked in the wrapper, a few type tests); anything else
takes the slow path and the shared rules.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..errors import InputTypeError, ShapeError
from ..evaluate import coerce_input
from ..function import CompiledFunction
from ..ir import gc_paused
from ..ops.leaves import numpy_dtype
from . import cache, staged
from .lowering import lower
from .indexing import raise_index_error
from .index_runtime import KernelIndexError
from .runtime import KernelShapeError


# Scalar values a kernel may receive as they are, by input dtype: exactly what the casting
# policy accepts without converting, and that Numba's conversion keeps exact (an int64
# int becomes a float64 by rounding, as the policy allows; a float32 input takes a Python
# float only below float32's largest value, so nothing overflows to inf).
_SCALAR_FAST_PATH = {  # builtins by _sd_ names: an input may be called "type" or "float"
    "float64": "_sd_type({x}) is _sd_float or _sd_type({x}) is _sd_np.float64 "
               "or (_sd_type({x}) is _sd_int and -9223372036854775808 <= {x} <= 9223372036854775807)",
    "float32": "_sd_type({x}) is _sd_np.float32 or (_sd_type({x}) is _sd_float and -3.4028234663852886e38 <= {x} "
               "<= 3.4028234663852886e38)",
    "int64": "(_sd_type({x}) is _sd_int and -9223372036854775808 <= {x} <= 9223372036854775807) "
             "or _sd_type({x}) is _sd_np.int64",
    "bool": "_sd_type({x}) is _sd_bool or _sd_type({x}) is _sd_np.bool_",
}


PAUSE_COMPILE_ABOVE = 1 << 20  # characters of kernel source (the 5,000-node chain's: 1 MB)


class NumbaFunction(CompiledFunction):
    """A function compiled to one Numba kernel (see ``sd.function``).

    ``source`` is the generated kernel, ``cache_status`` tells how the kernel was
    obtained ("miss", "hit", "memory", "uncached").  ``node_order`` (node id -> rank), for
    ``sd.distributed``'s workers: lower the nodes in the order another process created them,
    so the generated source (the cache key) is that process's.
    """

    backend = "numba"

    def __init__(self, symbols, outputs, lowered, single, node_order=None):
        super().__init__(symbols, outputs, lowered, single)
        # The wrapper's own names all start with _sd_; an input named so is renamed.
        self._names = [f"_sd_in{k}" if s.name.startswith("_sd_") else s.name for k, s in enumerate(self.inputs)]
        stages = staged.plan(self.inputs, self.lowered_outputs)
        if stages is None:
            # The collector's scans of the many objects lowering and Numba allocate for a big
            # graph take a third of its compile (40,000-node chain: 15.2-17.3 s with the compile
            # unpaused, 9.7-11.1 s paused).  The pause is process-wide (other threads' cyclic
            # garbage waits for it), so the compile of an ordinary kernel is not paused.
            with gc_paused():
                self.program = lower(self.inputs, self.lowered_outputs, single, node_order)
            self.source = self.program.source
            with gc_paused() if len(self.source) > PAUSE_COMPILE_ABOVE else contextlib.nullcontext():
                self.kernel, self.cache_status, self._hidden = cache.load_program(self.program)
            self._first_hidden = self._hidden
            self._first_kernel = self._rest = None
        else:  # users' impl functions between kernels: ``kernel`` is the Python function running them all
            staged.warn_once(stages)
            staged.build(self, stages, self._names, single)
            self._hidden = ()
        self.__class__ = self._specialised_class()

    def _specialised_class(self):
        """A subclass whose ``__call__`` takes exactly the inputs, by name.  With several
        kernels (``staged``) only the first one's errors take the slow path: it checks the
        inputs before any user code runs."""
        names = self._names
        params = ", ".join(names)
        arguments = ", ".join(names + [f"_sd_hidden[{k}]" for k in range(len(self._first_hidden))])
        again = f"_sd_self._slow_call(_sd_exc, ({params}{',' if len(names) == 1 else ''}))"
        finisher = self._float32_scalars()
        finish = "_sd_finish" if finisher else ""
        guards = []
        for sym, name in zip(self.inputs, names):
            if sym.ndim == 0:
                guards.append(f"    if not ({_SCALAR_FAST_PATH[sym.dtype].format(x=name)}):\n"
                              f"        return {finish}(_sd_self._slow_call(None, ({params}"
                              f"{',' if len(names) == 1 else ''})))\n")
        if self._rest is None:
            body = (f"    try:\n        return {finish}(_sd_kernel({arguments}))\n"
                    f"    except _sd_errors as _sd_exc:\n        return {finish}({again})\n")
        else:
            body = (f"    try:\n        _sd_first = _sd_kernel({arguments})\n"
                    f"    except _sd_errors as _sd_exc:\n        return {finish}({again})\n"
                    f"    return {finish}(_sd_rest({params}{', ' if names else ''}_sd_first))\n")
        source = f"def __call__(_sd_self, {params}):\n" + "".join(guards) + body
        namespace = {"_sd_kernel": self._first_kernel or self.kernel, "_sd_hidden": self._first_hidden,
                     "_sd_rest": self._rest, "_sd_np": np, "_sd_type": type, "_sd_float": float, "_sd_int": int,
                     "_sd_bool": bool, "_sd_finish": finisher,
                     "_sd_errors": (TypeError, ValueError, OverflowError, KernelShapeError, KernelIndexError)}
        exec(compile(source, f"<symdiff call wrapper {self!r}>", "exec"), namespace)
        call = namespace["__call__"]
        call.__doc__ = f"Evaluate the outputs at ({params})."
        return type("NumbaFunction", (NumbaFunction,), {"__call__": call, "__module__": __name__})

    def _float32_scalars(self):
        """A function giving the kernel's results with each 0-d float32 output as np.float32
        (Numba returns a Python float; the reference gives np.float32), or None if none is."""
        positions = frozenset(k for k, out in enumerate(self.lowered_outputs)
                              if out.ndim == 0 and out.dtype == "float32")
        if not positions:
            return None
        if self.single:
            return np.float32
        return lambda results: tuple(np.float32(v) if k in positions else v for k, v in enumerate(results))

    def _slow_call(self, error, values):
        """Check and convert every value (naming the input at fault), then call again.  An
        error raised by a user's impl (marked by ``custom.users_error``) goes through as it
        is: the user's code is not run twice."""
        if getattr(error, "_sd_users_error", False):
            raise error
        args = [self._convert(sym, value) for sym, value in zip(self.inputs, values)]
        try:
            return self.kernel(*args, *self._hidden)
        except Exception as exc:
            if getattr(exc, "_sd_users_error", False):
                raise
            if isinstance(exc, KernelIndexError):  # an index out of range: the reference names the node and index
                raise_index_error(self, args)
            if isinstance(exc, np.linalg.LinAlgError):  # singular or indefinite: the reference names node and line
                from .factorizations import raise_linalg_error

                raise_linalg_error(self, args)
            if isinstance(exc, KernelShapeError):
                size_error = self._size_error(args)
                if size_error is None:  # a check inside a loop's step: the reference names node and step
                    staged.explain(self, args, exc)
                raise size_error from None
            if isinstance(exc, TypeError):  # cannot happen for converted values; keep the cause visible
                raise InputTypeError(f"the compiled kernel rejected the converted inputs: {exc}") from error
            raise

    def _explain_failure(self, args, error):
        """A later kernel of a staged function failed: the reference evaluator names why."""
        staged.explain(self, args, error)

    @staticmethod
    def _convert(sym, value):
        checked = coerce_input(sym.name, sym.type, value)  # raises TypeError/ValueError naming the input
        if sym.ndim == 0:
            return checked[()]
        if isinstance(value, np.ndarray) and value.dtype == checked.dtype and value.flags.c_contiguous \
                and value.flags.writeable:
            return value
        return np.array(checked, dtype=numpy_dtype(sym.dtype), order="C", copy=True)

    def _size_error(self, args):
        """The error for the failed size check: a ShapeError saying which, or the error a
        ``check_sizes`` node asked for, with its message and the run-time sizes; None if none
        of the kernel's top-level checks failed."""
        failed = self._failed_size_check(args)
        if failed is None:  # the failed check was one inside a loop's step
            return None
        (left_size, right_size), (_, _, _, _, context) = failed
        if context in self.program.check_errors:
            from ..ops.structure import size_check_error

            return size_check_error(*self.program.check_errors[context], (left_size, right_size))
        return ShapeError(self._describe_size_error(failed))

    def _failed_size_check(self, args):
        """((left size, right size), check) of the first check that fails, or None."""
        from . import runtime

        params = self.program.params
        lines = [f"def sizes({', '.join(params)}):"]
        lines += [f"    {name} = {code}" for name, code in self.program.dim_definitions]
        pairs = ", ".join(f"({left}, {right})" for left, right, _, _, _ in self.program.checks)
        lines.append(f"    return [{pairs}]")
        namespace = {"SLICE_NONE": runtime.SLICE_NONE, "_slice_len": runtime._slice_len.py_func,
                     "_slice_start": runtime._slice_start.py_func}
        exec("\n".join(lines), namespace)
        values = namespace["sizes"](*args, *self._first_hidden)
        for sizes, check in zip(values, self.program.checks):
            if sizes[0] != sizes[1]:
                return sizes, check
        return None

    @staticmethod
    def _describe_size_error(failed) -> str:
        """Which size check failed, in the words of the check (``_failed_size_check``'s result)."""
        (left_size, right_size), (left_code, _, left, right, context) = failed
        if left_code.startswith("min("):  # a lower bound: min(size, needed) == needed
            return f"size too small: {left} is {left_size}, but {right} ({context})"
        return (f"sizes do not agree: {left} is {left_size} but {right} is {right_size} "
                f"(they must be equal for {context})")
