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

Casting policy (the same as the NumPy backend's): a value is accepted when NumPy
can cast it safely to the input's dtype (an int or float32 array for a float64
input, not float64 for float32); Python numbers are accepted for any input of
their kind or wider (an int for a float64 scalar).  One exception, to keep scalar
calls cheap: a NumPy float64 scalar passed for a float32 scalar input is rounded
to float32 rather than refused.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputTypeError, ShapeError
from ..evaluate import coerce_input
from ..function import CompiledFunction
from ..ops.leaves import numpy_dtype
from . import cache
from .lowering import lower
from .runtime import KernelShapeError


class NumbaFunction(CompiledFunction):
    """A function compiled to one Numba kernel (see ``sd.function``).

    ``source`` is the generated kernel, ``cache_status`` tells how the kernel was
    obtained ("miss", "hit", "memory", "uncached").
    """

    backend = "numba"

    def __init__(self, symbols, outputs, lowered, single):
        super().__init__(symbols, outputs, lowered, single)
        self.program = lower(self.inputs, self.lowered_outputs, single)
        self.source = self.program.source
        self.kernel, self.cache_status = cache.load(self.source, self.program.kernel_name)
        # constants are stored read-only; the kernel's signature takes writable arrays (it never writes them)
        self._hidden = tuple(np.array(array, order="C") for array in self.program.hidden)
        self.__class__ = self._specialised_class()

    def _specialised_class(self):
        """A subclass whose ``__call__`` takes exactly the inputs, by name."""
        # The wrapper's own names all start with _sd_; an input named so is renamed.
        names = [f"_sd_in{k}" if s.name.startswith("_sd_") else s.name for k, s in enumerate(self.inputs)]
        params = ", ".join(names)
        hidden = "".join(f", _sd_hidden[{k}]" for k in range(len(self._hidden)))
        guards = []
        for sym, name in zip(self.inputs, names):
            if sym.ndim == 0 and sym.dtype in ("int64", "bool"):
                # Numba would silently truncate a float given for an integer input
                kinds = "(bool, _sd_np.bool_)" if sym.dtype == "bool" else "(int, _sd_np.integer)"
                guards.append(f"    if not isinstance({name}, {kinds}):\n"
                              f"        return _sd_self._slow_call(None, ({params}{',' if len(names) == 1 else ''}))\n")
        source = (
            f"def __call__(_sd_self, {params}):\n"
            + "".join(guards)
            + "    try:\n"
            + f"        return _sd_kernel({params}{hidden})\n"
            + "    except _sd_errors as _sd_exc:\n"
            + f"        return _sd_self._slow_call(_sd_exc, ({params}{',' if len(names) == 1 else ''}))\n"
        )
        namespace = {"_sd_kernel": self.kernel, "_sd_hidden": self._hidden, "_sd_np": np,
                     "_sd_errors": (TypeError, ValueError, OverflowError, KernelShapeError)}
        exec(compile(source, f"<symdiff call wrapper {self!r}>", "exec"), namespace)
        call = namespace["__call__"]
        call.__doc__ = f"Evaluate the outputs at ({params})."
        return type("NumbaFunction", (NumbaFunction,), {"__call__": call, "__module__": __name__})

    def _slow_call(self, error, values):
        """Check and convert every value (naming the input at fault), then call again."""
        args = [self._convert(sym, value) for sym, value in zip(self.inputs, values)]
        try:
            return self.kernel(*args, *self._hidden)
        except KernelShapeError:
            raise ShapeError(self._describe_size_error(args)) from None
        except TypeError as exc:  # cannot happen for converted values; keep the cause visible
            raise InputTypeError(f"the compiled kernel rejected the converted inputs: {exc}") from error

    @staticmethod
    def _convert(sym, value):
        checked = coerce_input(sym.name, sym.type, value)  # raises TypeError/ValueError naming the input
        if sym.ndim == 0:
            return checked[()]
        if isinstance(value, np.ndarray) and value.dtype == checked.dtype and value.flags.c_contiguous \
                and value.flags.writeable:
            return value
        return np.array(checked, dtype=numpy_dtype(sym.dtype), order="C", copy=True)

    def _describe_size_error(self, args) -> str:
        """Which size check failed, evaluated in Python with the kernel's own formulas."""
        from . import runtime

        params = self.program.params
        lines = [f"def sizes({', '.join(params)}):"]
        lines += [f"    {name} = {code}" for name, code in self.program.dim_definitions]
        pairs = ", ".join(f"({left}, {right})" for left, right, _, _, _ in self.program.checks)
        lines.append(f"    return [{pairs}]")
        namespace = {"SLICE_NONE": runtime.SLICE_NONE, "_slice_len": runtime._slice_len.py_func,
                     "_slice_start": runtime._slice_start.py_func}
        exec("\n".join(lines), namespace)
        values = namespace["sizes"](*args, *self._hidden)
        for (left_size, right_size), (left_code, _, left, right, context) in zip(values, self.program.checks):
            if left_size != right_size:
                if left_code.startswith("min("):  # a lower bound: min(size, needed) == needed
                    return f"size too small: {left} is {left_size}, but {right} ({context})"
                return (f"sizes do not agree: {left} is {left_size} but {right} is {right_size} "
                        f"(they must be equal for {context})")
        return "run-time sizes do not agree"
