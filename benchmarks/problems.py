"""The benchmark problems, written once as a cost function over a small namespace
of array functions, plus the hand-written NumPy and Numba baselines.

Every implementation computes three *variants* of a problem:

- ``value``: the cost;
- ``value_grad``: the cost followed by its gradient for each parameter;
- ``hvp``: the Hessian-vector product for each parameter, along tangents ``v_<param>``.

Positional arguments are the parameters, then the data, then (HVP only) the
tangents, in the order the problem lists them.  This module imports only NumPy
(Numba lazily, inside ``hand_numba``), so a peer's worker process does not pay
for symdiff or Numba it does not use.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

VARIANTS = ("value", "value_grad", "hvp")
VARIANT_TITLES = {"value": "value", "value_grad": "value+grad", "hvp": "HVP"}


@dataclass(frozen=True)
class Problem:
    name: str
    title: str
    params: tuple          # (name, shape) of the differentiated inputs
    data: tuple = ()       # (name, shape) of the inputs that are not differentiated
    quick: bool = True     # part of the --quick smoke run
    notes: dict = field(default_factory=dict)
    variants: tuple = VARIANTS  # the variants this problem has (a vector-valued cost has no gradient)
    none_dims: tuple = ()  # inputs declared with every size None (the twin "<name>_none" of a problem)
    static_twin: str = ""  # for a None-dims twin: the problem it copies

    @property
    def dynamic(self) -> bool:
        return bool(self.static_twin)

    def declared_shapes(self) -> dict:
        """The shapes symdiff and PyTensor declare: None for every size of a ``none_dims`` input."""
        shapes = self.shapes()
        return {n: (tuple(None for _ in s) if n.removeprefix("v_") in self.none_dims else s) for n, s in shapes.items()}

    def arg_names(self, variant: str) -> list:
        names = [n for n, _ in self.params] + [n for n, _ in self.data]
        if variant == "hvp":
            names += ["v_" + n for n, _ in self.params]
        return names

    def shapes(self) -> dict:
        shapes = dict(self.params) | dict(self.data)
        shapes |= {"v_" + n: s for n, s in self.params}
        return shapes


PROBLEMS = {
    "seed": Problem("seed", "seed: e = (a+b)*(b+1), value and both partials", params=(("a", ()), ("b", ()))),
    "rosenbrock_1e3": Problem("rosenbrock_1e3", "Rosenbrock, n = 1e3", params=(("x", (1000,)),)),
    "rosenbrock_1e6": Problem("rosenbrock_1e6", "Rosenbrock, n = 1e6", params=(("x", (1_000_000,)),), quick=False),
    "mlp": Problem(
        "mlp", "MLP: X 256x64, tanh 128, softmax 10, mean cross-entropy",
        params=(("W1", (64, 128)), ("b1", (128,)), ("W2", (128, 10)), ("b2", (10,))),
        data=(("X", (256, 64)), ("Y", (256, 10))),
    ),
    "chain": Problem("chain", "chain: x <- sin(x)*x + cos(x), 300 times, scalar", params=(("x", ()),)),
    # issue 14: where users are (sizes known at call time, transcendental math, thin matrix products)
    "logreg": Problem(
        "logreg", "logistic regression: X 100,000 x 20, mean(softplus(z) - y z), z = X w + b",
        params=(("w", (20,)), ("b", ())), data=(("X", (100_000, 20)), ("y", (100_000,))),
        quick=False, variants=("value", "value_grad"),
    ),
    "tanh_sum": Problem("tanh_sum", "sum(tanh(x)), n = 1e6", params=(("x", (1_000_000,)),),
                        variants=("value", "value_grad")),
    "softplus_sum": Problem("softplus_sum", "sum(softplus(x)), n = 1e6", params=(("x", (1_000_000,)),),
                            variants=("value", "value_grad")),
    "exp_log1p_sum": Problem("exp_log1p_sum", "sum(exp(x) * log1p(x)), n = 1e6", params=(("x", (1_000_000,)),),
                             variants=("value", "value_grad")),
    "matmul_sum": Problem("matmul_sum", "sum(X @ W): X 20,000 x 30 (data), W 30 x 64",
                          params=(("W", (30, 64)),), data=(("X", (20_000, 30)),), variants=("value", "value_grad")),
    "relu_matvec": Problem("relu_matvec", "maximum(X @ W, 0) @ v: X 20,000 x 30, W 30 x 64, v of 64 (vector result)",
                           params=(("W", (30, 64)), ("v", (64,))), data=(("X", (20_000, 30)),), variants=("value",)),
}

# Which inputs a user would declare with None sizes.  Data always (one kernel for every batch);
# parameters too where their sizes are the data's (Rosenbrock's x, the 1e6-element x), and also
# the MLP's and the products' weights: a user writing ``sd.matrix("W1")`` declares them so.  Only
# the logistic regression keeps w static (20 features are the model), as a user fitting one model would.
NONE_DIMS = {
    "rosenbrock_1e3": ("x",), "rosenbrock_1e6": ("x",),
    "mlp": ("W1", "b1", "W2", "b2", "X", "Y"),
    "logreg": ("X", "y"),
    "tanh_sum": ("x",), "softplus_sum": ("x",), "exp_log1p_sum": ("x",),
    "matmul_sum": ("W", "X"), "relu_matvec": ("W", "v", "X"),
}
# seed and chain are scalar problems: nothing to declare None, so no twin.
for _name, _dims in NONE_DIMS.items():
    _base = PROBLEMS[_name]
    PROBLEMS[_name + "_none"] = replace(_base, name=_name + "_none", title=_base.title + ", sizes None",
                                        none_dims=_dims, static_twin=_name)
DYNAMIC_TWINS = {name + "_none": name for name in NONE_DIMS}


def base_name(problem_name: str) -> str:
    """The problem a None-dims twin copies (itself for a static problem)."""
    return DYNAMIC_TWINS.get(problem_name, problem_name)

CHAIN_LAYERS = 300


def make_inputs(problem: Problem, seed: int = 0) -> dict:
    """Deterministic float64 inputs for every argument of every variant."""
    rng = np.random.default_rng(seed)
    name = base_name(problem.name)
    if name == "seed":
        values = {"a": 2.0, "b": 1.0}
    elif name.startswith("rosenbrock"):
        (n,) = problem.params[0][1]
        values = {"x": rng.uniform(-1.5, 1.5, n)}
    elif name == "logreg":
        X = rng.standard_normal((100_000, 20))
        w_true = rng.standard_normal(20)
        values = {"w": rng.standard_normal(20) * 0.1, "b": 0.1, "X": X,
                  "y": (rng.uniform(size=100_000) < 1 / (1 + np.exp(-X @ w_true))).astype(np.float64)}
    elif name in ("tanh_sum", "softplus_sum"):
        values = {"x": rng.uniform(-5.0, 5.0, 1_000_000)}
    elif name == "exp_log1p_sum":
        values = {"x": rng.uniform(-0.5, 3.0, 1_000_000)}
    elif name in ("matmul_sum", "relu_matvec"):
        values = {"W": rng.standard_normal((30, 64)) * 0.2, "v": rng.standard_normal(64),
                  "X": rng.standard_normal((20_000, 30))}
        values = {k: v for k, v in values.items() if k in problem.shapes()}
    elif name == "mlp":
        labels = rng.integers(0, 10, 256)
        values = {
            "W1": rng.standard_normal((64, 128)) * 0.1, "b1": rng.standard_normal(128) * 0.1,
            "W2": rng.standard_normal((128, 10)) * 0.1, "b2": rng.standard_normal(10) * 0.1,
            "X": rng.standard_normal((256, 64)), "Y": np.eye(10)[labels],
        }
    elif name == "chain":
        values = {"x": 0.5}
    else:
        raise KeyError(problem.name)
    for name, shape in problem.params:
        values["v_" + name] = rng.standard_normal(shape) if shape else float(rng.standard_normal())
    return {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}


def cost(problem_name: str, ns, *args):
    """The problem's scalar cost, written with the functions of namespace ``ns``
    (``sum``, ``tanh``, ``sin``, ``cos``, ``log_softmax``, ``softplus``, ``exp``, ``log1p``,
    ``maximum``) and Python operators."""
    problem_name = base_name(problem_name)
    if problem_name == "seed":
        a, b = args
        return (a + b) * (b + 1)
    if problem_name.startswith("rosenbrock"):
        (x,) = args
        return ns.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    if problem_name == "mlp":
        W1, b1, W2, b2, X, Y = args
        logits = ns.tanh(X @ W1 + b1) @ W2 + b2
        return -ns.sum(Y * ns.log_softmax(logits, 1)) / X.shape[0]
    if problem_name == "chain":
        (x,) = args
        for _ in range(CHAIN_LAYERS):
            x = ns.sin(x) * x + ns.cos(x)
        return x
    if problem_name == "logreg":
        w, b, X, y = args
        z = X @ w + b
        return ns.sum(ns.softplus(z) - y * z) / X.shape[0]
    if problem_name == "tanh_sum":
        return ns.sum(ns.tanh(args[0]))
    if problem_name == "softplus_sum":
        return ns.sum(ns.softplus(args[0]))
    if problem_name == "exp_log1p_sum":
        (x,) = args
        return ns.sum(ns.exp(x) * ns.log1p(x))
    if problem_name == "matmul_sum":
        W, X = args
        return ns.sum(X @ W)
    if problem_name == "relu_matvec":
        W, v, X = args
        return ns.maximum(X @ W, 0.0) @ v
    raise KeyError(problem_name)


# ------------------------------------------------------------------ symdiff

def symdiff_graph(problem: Problem, variant: str):
    """(input symbols in argument order, outputs) of the symdiff graph for a variant.
    ``value`` gives one Expr, the others a list."""
    import symdiff as sd

    symbols = {name: sd.tensor(name, shape) for name, shape in problem.declared_shapes().items()}
    params = [symbols[n] for n, _ in problem.params]
    data = [symbols[n] for n, _ in problem.data]
    ns = _SymdiffNamespace(sd)
    f = cost(problem.name, ns, *params, *data)
    if variant == "value":
        outputs = f
    elif variant == "value_grad":
        outputs = [f, *sd.grad(f, params)]
    else:
        tangents = [symbols["v_" + n] for n, _ in problem.params]
        outputs = list(sd.hvp(f, params, tangents))
    return [symbols[n] for n in problem.arg_names(variant)], outputs


class _SymdiffNamespace:
    def __init__(self, sd):
        self.sum, self.tanh, self.sin, self.cos = sd.sum, sd.tanh, sd.sin, sd.cos
        self.softplus, self.exp, self.log1p, self.maximum = sd.softplus, sd.exp, sd.log1p, sd.maximum
        self.log_softmax = lambda z, axis: sd.log_softmax(z, axis=axis)


def reference(problem: Problem, inputs: dict) -> dict:
    """{variant: [arrays]} from symdiff's NumPy reference evaluator."""
    import symdiff as sd

    results = {}
    for variant in problem.variants:
        symbols, outputs = symdiff_graph(problem, variant)
        outs = outputs if isinstance(outputs, list) else [outputs]
        values = sd.evaluate(outs, {s: inputs[s.name] for s in symbols})
        results[variant] = [np.asarray(v, dtype=np.float64) for v in values]
    return results


# ------------------------------------------------------------------ NumPy by hand

def _rosenbrock_numpy(variant):
    def value(x):
        head, tail = x[:-1], x[1:]
        return np.sum(100.0 * (tail - head ** 2) ** 2 + (1.0 - head) ** 2)

    def value_grad(x):
        head, tail = x[:-1], x[1:]
        d = tail - head ** 2
        f = np.sum(100.0 * d ** 2 + (1.0 - head) ** 2)
        g = np.zeros_like(x)
        g[:-1] = -400.0 * head * d - 2.0 * (1.0 - head)
        g[1:] += 200.0 * d
        return f, g

    def hvp(x, v):
        head, tail, v_head, v_tail = x[:-1], x[1:], v[:-1], v[1:]
        out = np.zeros_like(x)
        out[:-1] = (1200.0 * head ** 2 - 400.0 * tail + 2.0) * v_head - 400.0 * head * v_tail
        out[1:] += -400.0 * head * v_head + 200.0 * v_tail
        return out

    return {"value": value, "value_grad": value_grad, "hvp": hvp}[variant]


def _mlp_numpy(variant):
    def forward(W1, b1, W2, b2, X, Y):
        hidden = np.tanh(X @ W1 + b1)
        logits = hidden @ W2 + b2
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return hidden, log_probs, -np.sum(Y * log_probs) / X.shape[0]

    def value(W1, b1, W2, b2, X, Y):
        return forward(W1, b1, W2, b2, X, Y)[2]

    def value_grad(W1, b1, W2, b2, X, Y):
        hidden, log_probs, loss = forward(W1, b1, W2, b2, X, Y)
        d_logits = (np.exp(log_probs) - Y) / X.shape[0]
        d_pre = (d_logits @ W2.T) * (1.0 - hidden ** 2)
        return loss, X.T @ d_pre, d_pre.sum(axis=0), hidden.T @ d_logits, d_logits.sum(axis=0)

    return {"value": value, "value_grad": value_grad}.get(variant)


def _expit(z):
    # exp(z - softplus(z)) is 1/(1+exp(-z)) without overflow for any z
    return np.exp(z - np.logaddexp(0.0, z))


def _new_problems_numpy(problem_name, variant):
    """NumPy's ufuncs and ``@`` doing the work of each issue-14 problem, with no more passes than needed."""
    if problem_name == "logreg":
        def value(w, b, X, y):
            z = X @ w + b
            return np.sum(np.logaddexp(0.0, z) - y * z) / X.shape[0]

        def value_grad(w, b, X, y):
            z = X @ w + b
            softplus = np.logaddexp(0.0, z)
            r = (np.exp(z - softplus) - y) / X.shape[0]
            return np.sum(softplus - y * z) / X.shape[0], X.T @ r, r.sum()
    elif problem_name == "tanh_sum":
        def value(x):
            return np.tanh(x).sum()

        def value_grad(x):
            t = np.tanh(x)
            return t.sum(), 1.0 - t * t
    elif problem_name == "softplus_sum":
        def value(x):
            return np.logaddexp(0.0, x).sum()

        def value_grad(x):
            s = np.logaddexp(0.0, x)
            return s.sum(), np.exp(x - s)
    elif problem_name == "exp_log1p_sum":
        def value(x):
            return (np.exp(x) * np.log1p(x)).sum()

        def value_grad(x):
            e, l = np.exp(x), np.log1p(x)
            return (e * l).sum(), e * (l + 1.0 / (1.0 + x))
    elif problem_name == "matmul_sum":
        def value(W, X):
            return (X @ W).sum()

        def value_grad(W, X):
            Y = X @ W
            return Y.sum(), X.T @ np.ones_like(Y)
    elif problem_name == "relu_matvec":
        def value(W, v, X):
            return np.maximum(X @ W, 0.0) @ v
        value_grad = None
    else:
        return None
    return {"value": value, "value_grad": value_grad}.get(variant)


def hand_numpy(problem_name: str, variant: str):
    """The hand-written NumPy function, or None where there is none."""
    problem_name = base_name(problem_name)
    if problem_name in ("logreg", "tanh_sum", "softplus_sum", "exp_log1p_sum", "matmul_sum", "relu_matvec"):
        return _new_problems_numpy(problem_name, variant)
    if problem_name.startswith("rosenbrock"):
        return _rosenbrock_numpy(variant)
    if problem_name == "mlp":
        return _mlp_numpy(variant)
    return None


# ------------------------------------------------------------------ Numba by hand

def hand_numba(problem_name: str, variant: str):
    """A hand-written Numba loop (compiled on its first call), or None."""
    import math

    from numba import njit

    problem_name = base_name(problem_name)
    if problem_name == "seed":
        def value(a, b):
            return (a + b) * (b + 1.0)

        def value_grad(a, b):
            s = a + b
            t = b + 1.0
            return s * t, t, t + s

        def hvp(a, b, v_a, v_b):
            return v_b, v_a + 2.0 * v_b

    elif problem_name.startswith("rosenbrock"):
        def value(x):
            total = 0.0
            for i in range(x.shape[0] - 1):
                d = x[i + 1] - x[i] * x[i]
                e = 1.0 - x[i]
                total += 100.0 * d * d + e * e
            return total

        def value_grad(x):
            g = np.zeros_like(x)
            total = 0.0
            for i in range(x.shape[0] - 1):
                d = x[i + 1] - x[i] * x[i]
                e = 1.0 - x[i]
                total += 100.0 * d * d + e * e
                g[i] += -400.0 * x[i] * d - 2.0 * e
                g[i + 1] += 200.0 * d
            return total, g

        def hvp(x, v):
            out = np.zeros_like(x)
            for i in range(x.shape[0] - 1):
                out[i] += (1200.0 * x[i] * x[i] - 400.0 * x[i + 1] + 2.0) * v[i] - 400.0 * x[i] * v[i + 1]
                out[i + 1] += -400.0 * x[i] * v[i] + 200.0 * v[i + 1]
            return out

    elif problem_name == "chain":
        layers = CHAIN_LAYERS

        def value(x):
            for _ in range(layers):
                x = math.sin(x) * x + math.cos(x)
            return x

        def value_grad(x):
            dx = 1.0
            for _ in range(layers):
                s, c = math.sin(x), math.cos(x)
                dx = x * c * dx          # d/dx (sin(x) x + cos(x)) = x cos(x)
                x = s * x + c
            return x, dx

        def hvp(x, v):
            dx, ddx = 1.0, 0.0
            for _ in range(layers):
                s, c = math.sin(x), math.cos(x)
                ddx = (c - x * s) * dx * dx + x * c * ddx
                dx = x * c * dx
                x = s * x + c
            return ddx * v

    else:
        return None
    return njit(cache=False)({"value": value, "value_grad": value_grad, "hvp": hvp}[variant])
