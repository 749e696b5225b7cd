"""How each implementation (symdiff and its peers) builds and calls a problem variant.

An implementation gives, per (problem, variant):

- ``prepare(problem, variant, inputs)``: the positional arguments in the form the
  implementation is fastest with (Python floats for scalars to symdiff and Numba,
  device arrays to JAX, tensors to PyTorch, 0-d arrays to PyTensor with
  ``trust_input``); not timed;
- ``build(problem, variant)``: a callable; the time from the start of ``build`` to
  the end of the first call is the compile time.

``applies(problem, variant)`` says where an implementation has no version of a
variant (e.g. no hand-written NumPy HVP for the MLP); the report shows "-" there.
Imports happen in ``setup`` so the worker can keep them out of compile times.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import numpy as np

from problems import Problem, base_name, cost, hand_numba, hand_numpy, symdiff_graph


class Impl:
    name = ""
    label = ""
    modules: tuple = ()        # what must be importable for this implementation to run
    compiles = True            # False: nothing is compiled (eager), no compile time is reported
    # True: the implementation is told the input sizes when it builds (symdiff, PyTensor), so a
    # None-dims twin of a problem is a different build worth measuring; for the others (JAX traces
    # at the first call, PyTorch is eager, NumPy and Numba by hand need nothing) the twin is the same
    # measurement as the static problem, and the report takes their figure from there.
    declares_sizes = False

    def available(self) -> str | None:
        """None when usable, else why not."""
        missing = [m for m in self.modules if importlib.util.find_spec(m) is None]
        return f"not installed ({', '.join(missing)})" if missing else None

    def setup(self):
        pass

    def applies(self, problem: Problem, variant: str) -> bool:
        return variant in problem.variants and (self.declares_sizes or not problem.dynamic)

    def prepare(self, problem: Problem, variant: str, inputs: dict) -> list:
        return [float(inputs[n]) if inputs[n].ndim == 0 else inputs[n] for n in problem.arg_names(variant)]

    def build(self, problem: Problem, variant: str):
        raise NotImplementedError


class Symdiff(Impl):
    name = "symdiff"
    modules = ("symdiff",)
    declares_sizes = True

    def __init__(self, backend="numba"):
        self.backend = backend
        self.label = "symdiff" if backend == "numba" else f"symdiff ({backend} backend)"

    def setup(self):
        import symdiff

        self.sd = symdiff
        if self.backend == "numba":
            import numba  # noqa: F401  (importing Numba is not compiling)

    def available(self):
        reason = super().available()
        if reason is not None:
            return reason
        module = "symdiff.backends.numba_backend" if self.backend == "numba" else "symdiff.function"
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        return None if found else f"sd.function's {self.backend} backend is not there ({module} is missing)"

    def build(self, problem, variant):
        symbols, outputs = symdiff_graph(problem, variant)
        return self.sd.function(symbols, outputs, backend=self.backend)


class HandNumpy(Impl):
    name, label = "numpy", "NumPy by hand"
    compiles = False

    def applies(self, problem, variant):
        return super().applies(problem, variant) and hand_numpy(problem.name, variant) is not None

    def build(self, problem, variant):
        return hand_numpy(problem.name, variant)


class HandNumba(Impl):
    name, label = "numba", "Numba by hand"
    modules = ("numba",)

    def setup(self):
        import numba  # noqa: F401

    def applies(self, problem, variant):
        name = base_name(problem.name)
        return super().applies(problem, variant) and (name in ("seed", "chain") or name.startswith("rosenbrock"))

    def build(self, problem, variant):
        return hand_numba(problem.name, variant)


def _split(problem: Problem, variant: str, args):
    k, d = len(problem.params), len(problem.data)
    return list(args[:k]), list(args[k:k + d]), list(args[k + d:])


class Jax(Impl):
    name, label = "jax", "JAX (jit, x64)"
    modules = ("jax",)

    def setup(self):
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.ns = _Namespace(sum=jnp.sum, tanh=jnp.tanh, sin=jnp.sin, cos=jnp.cos,
                             log_softmax=lambda z, axis: jax.nn.log_softmax(z, axis=axis),
                             softplus=jax.nn.softplus, exp=jnp.exp, log1p=jnp.log1p, maximum=jnp.maximum)
        jnp.zeros(1).block_until_ready()  # backend start-up is not compilation

    def prepare(self, problem, variant, inputs):
        return [self.jax.device_put(inputs[n]) for n in problem.arg_names(variant)]

    def build(self, problem, variant):
        jax, k = self.jax, len(problem.params)
        name = problem.name

        def f(*args):
            return cost(name, self.ns, *args)

        if variant == "value":
            compiled = jax.jit(f)
        elif variant == "value_grad":
            value_and_grad = jax.value_and_grad(f, argnums=tuple(range(k)))

            def vg(*args):
                value, grads = value_and_grad(*args)
                return (value, *grads)

            compiled = jax.jit(vg)
        else:
            def hvp(*args):
                params, data, tangents = _split(problem, variant, args)
                grad = jax.grad(lambda *p: f(*p, *data), argnums=tuple(range(k)))
                return jax.jvp(grad, tuple(params), tuple(tangents))[1]

            compiled = jax.jit(hvp)
        block = jax.block_until_ready
        return lambda *args: block(compiled(*args))


class PyTensor(Impl):
    name, label = "pytensor", "PyTensor (NUMBA, trust_input)"
    modules = ("pytensor",)
    declares_sizes = True

    def setup(self):
        import pytensor
        import pytensor.tensor as pt
        from pytensor.tensor.math import softplus
        from pytensor.tensor.special import log_softmax

        self.pytensor, self.pt = pytensor, pt
        self.ns = _Namespace(sum=pt.sum, tanh=pt.tanh, sin=pt.sin, cos=pt.cos,
                             log_softmax=lambda z, axis: log_softmax(z, axis=axis),
                             softplus=softplus, exp=pt.exp, log1p=pt.log1p, maximum=pt.maximum)

    def prepare(self, problem, variant, inputs):
        return [np.asarray(inputs[n], dtype=np.float64) for n in problem.arg_names(variant)]

    def build(self, problem, variant):
        pt = self.pt
        shapes = problem.declared_shapes()
        symbols = [pt.tensor(name=n, dtype="float64", shape=shapes[n]) for n in problem.arg_names(variant)]
        params, data, tangents = _split(problem, variant, symbols)
        f = cost(problem.name, self.ns, *params, *data)
        if variant == "value":
            outputs = f
        elif variant == "value_grad":
            outputs = [f, *pt.grad(f, params)]
        else:
            grads = pt.grad(f, params)
            inner = sum((g * v).sum() for g, v in zip(grads, tangents))
            outputs = pt.grad(inner, params)
        return self.pytensor.function(symbols, outputs, mode="NUMBA", trust_input=True)


class Torch(Impl):
    name, label = "torch", "PyTorch (eager, CPU)"
    modules = ("torch",)
    compiles = False

    def setup(self):
        import torch

        self.torch = torch
        self.ns = _Namespace(sum=torch.sum, tanh=torch.tanh, sin=torch.sin, cos=torch.cos,
                             log_softmax=lambda z, axis: torch.log_softmax(z, dim=axis),
                             softplus=torch.nn.functional.softplus, exp=torch.exp, log1p=torch.log1p,
                             maximum=lambda a, b: torch.clamp(a, min=b))

    def prepare(self, problem, variant, inputs):
        names = problem.arg_names(variant)
        params = {n for n, _ in problem.params}
        return [self.torch.tensor(inputs[n], dtype=self.torch.float64, requires_grad=n in params and variant != "value")
                for n in names]

    def build(self, problem, variant):
        torch, name, k = self.torch, problem.name, len(problem.params)

        if variant == "value":
            def value(*args):
                with torch.no_grad():
                    return cost(name, self.ns, *args)
            return value
        if variant == "value_grad":
            def value_grad(*args):
                f = cost(name, self.ns, *args)
                return (f.detach(), *torch.autograd.grad(f, args[:k]))
            return value_grad

        def hvp(*args):
            params, data, tangents = _split(problem, variant, args)
            grads = torch.autograd.grad(cost(name, self.ns, *params, *data), params, create_graph=True)
            inner = sum((g * v).sum() for g, v in zip(grads, tangents))
            return torch.autograd.grad(inner, params)
        return hvp


class Casadi(Impl):
    name, label = "casadi", "CasADi (SX Function)"
    modules = ("casadi",)

    def setup(self):
        import casadi

        self.ca = casadi
        self.ns = _Namespace(sum=lambda x: casadi.sum1(x), sin=casadi.sin, cos=casadi.cos)

    def applies(self, problem, variant):
        # Scalar expression graphs: an SX matmul of 256x64 by 64x128 is two million
        # scalar nodes, which is not how CasADi is meant to be used; the same holds for
        # issue 14's problems of 1e6 elements and 100,000-row products.
        return super().applies(problem, variant) and problem.name in ("seed", "chain", "rosenbrock_1e3",
                                                                     "rosenbrock_1e6")

    def prepare(self, problem, variant, inputs):
        return [float(inputs[n]) if inputs[n].ndim == 0 else inputs[n] for n in problem.arg_names(variant)]

    def build(self, problem, variant):
        ca = self.ca
        shapes = problem.shapes()
        symbols = [ca.SX.sym(n, *shapes[n]) for n in problem.arg_names(variant)]
        params, data, tangents = _split(problem, variant, symbols)
        f = cost(problem.name, self.ns, *params, *data)
        if variant == "value":
            outputs = [f]
        elif variant == "value_grad":
            outputs = [f, *(ca.gradient(f, p) for p in params)]
        else:
            stacked = ca.vertcat(*params)
            hv = ca.jtimes(ca.gradient(f, stacked), stacked, ca.vertcat(*tangents))
            sizes = np.cumsum([0] + [max(1, int(np.prod(shapes[n]))) for n, _ in problem.params]).tolist()
            outputs = ca.vertsplit(hv, sizes)
        return ca.Function(variant, symbols, outputs)


class _Namespace:
    def __init__(self, **functions):
        self.__dict__.update(functions)


def all_impls(symdiff_backend="numba") -> dict:
    impls = [Symdiff(symdiff_backend), HandNumpy(), HandNumba(), Jax(), PyTensor(), Torch(), Casadi()]
    return {impl.name: impl for impl in impls}


PEERS = ("jax", "pytensor", "torch", "casadi")
