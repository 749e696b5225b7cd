"""Fit the four parameters of a Lotka-Volterra predator-prey model to noisy observations,
with gradients and Hessian-vector products through a 1,000-step Runge-Kutta loop.

    prey'     = alpha * prey - beta * prey * predator
    predator' = delta * prey * predator - gamma * predator

The integrator is classic Runge-Kutta 4 with a fixed step, written once as the body of
an ``sd.fori_loop`` of 1,000 steps; the squared error against the observations (every
``--every`` steps) is accumulated in the loop's carry.  ``sd.grad`` of that loss is a
reverse loop (backprop through the integrator), and ``sd.hvp`` differentiates that loop
again, so SciPy's trust-region Newton-CG (``trust-ncg``) gets exact gradients and
Hessian-vector products.  The parameters are fitted as logarithms (they are positive).

    python examples/ode_fit.py                 # recovers the parameters to ~1%
    python examples/ode_fit.py --backend numpy --steps 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import symdiff as sd

TRUE = {"alpha": 1.0, "beta": 0.5, "delta": 0.2, "gamma": 0.8}
START = (8.0, 1.0)  # prey, predator at t = 0 (the equilibrium is at (gamma / delta, alpha / beta))


def vector_field(state, params):
    prey, predator = state
    alpha, beta, delta, gamma = params
    return (alpha * prey - beta * prey * predator, delta * prey * predator - gamma * predator)


def rk4(state, params, dt):
    """One classic Runge-Kutta 4 step of ``vector_field``."""
    def shifted(k, scale):
        return tuple(s + scale * d for s, d in zip(state, k))

    k1 = vector_field(state, params)
    k2 = vector_field(shifted(k1, dt / 2), params)
    k3 = vector_field(shifted(k2, dt / 2), params)
    k4 = vector_field(shifted(k3, dt), params)
    return tuple(s + dt / 6 * (a + 2 * b + 2 * c + d) for s, a, b, c, d in zip(state, k1, k2, k3, k4))


def simulate(params: np.ndarray, steps: int, dt: float) -> np.ndarray:
    """The same integrator in NumPy: the states after each step, (steps, 2)."""
    state, out = START, np.empty((steps, 2))
    for i in range(steps):
        state = rk4(state, tuple(params), dt)
        out[i] = state
    return out


def build(steps: int, dt: float, backend: str):
    """Compiled (loss, gradient) and Hessian-vector product of the log-parameters."""
    theta = sd.vector("theta", 4)  # log alpha, log beta, log delta, log gamma
    v = sd.vector("v", 4)
    observed = sd.matrix("observed", (steps, 2))  # the data after each step (zero where not observed)
    weight = sd.vector("weight", steps)  # 1 where observed, 0 elsewhere
    params = tuple(sd.exp(theta[k]) for k in range(4))

    def step(i, carry):
        prey, predator, loss = carry
        prey, predator = rk4((prey, predator), params, dt)
        error = (prey - observed[i, 0]) ** 2 + (predator - observed[i, 1]) ** 2
        return prey, predator, loss + weight[i] * error

    _, _, loss = sd.fori_loop(0, steps, step, (START[0], START[1], 0.0))
    gradient = sd.grad(loss, theta)
    inputs = [theta, observed, weight]
    value_and_grad = sd.function(inputs, [loss, gradient], backend=backend)
    hessian_vector = sd.function(inputs + [v], sd.hvp(loss, theta, v), backend=backend)
    return value_and_grad, hessian_vector


def main(argv=None) -> dict:
    try:
        from scipy.optimize import minimize
    except ImportError:  # the example's extra: name it instead of a bare ModuleNotFoundError
        raise SystemExit("ode_fit.py fits with SciPy's trust-ncg: install the examples extra, "
                         "pip install 'symdiff[examples]' (or pip install scipy)") from None

    parser = argparse.ArgumentParser(description="Fit Lotka-Volterra parameters through an RK4 fori_loop.")
    parser.add_argument("--backend", default="numba", choices=("numba", "numpy"))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--horizon", type=float, default=15.0, help="simulated time")
    parser.add_argument("--every", type=int, default=25, help="observe every this many steps")
    parser.add_argument("--noise", type=float, default=0.05, help="relative noise of the observations")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    dt = args.horizon / args.steps
    true = np.array(list(TRUE.values()))
    rng = np.random.default_rng(args.seed)
    clean = simulate(true, args.steps, dt)
    weight = np.zeros(args.steps)
    weight[args.every - 1::args.every] = 1.0
    observed = clean * (1 + args.noise * rng.normal(size=clean.shape)) * weight[:, None]

    value_and_grad, hessian_vector = build(args.steps, dt, args.backend)
    theta0 = np.log(true * np.array([1.4, 0.7, 1.3, 0.75]))  # a start 25-40% off
    value_and_grad(theta0, observed, weight)
    print(f"functions built, first call done ({args.backend} backend): {time.perf_counter() - started:.2f} s")

    def fun(theta):
        loss, gradient = value_and_grad(theta, observed, weight)
        return float(loss), gradient

    result = minimize(fun, theta0, jac=True, method="trust-ncg",
                      hessp=lambda theta, v: hessian_vector(theta, observed, weight, v),
                      options={"gtol": 1e-8, "maxiter": 200})
    fitted = np.exp(result.x)
    print(f"trust-ncg: {result.nit} iterations, {result.nfev} evaluations, {result.nhev} Hessian-vector "
          f"products, loss {result.fun:.6g} ({result.message})")
    print(f"{'parameter':>10} {'true':>8} {'start':>8} {'fitted':>8} {'error':>8}")
    for name, t, s, f in zip(TRUE, true, np.exp(theta0), fitted):
        print(f"{name:>10} {t:8.4f} {s:8.4f} {f:8.4f} {abs(f - t) / t:8.2%}")
    seconds = time.perf_counter() - started
    print(f"total time {seconds:.1f} s")
    return {"true": true, "fitted": fitted, "success": bool(result.success), "seconds": seconds,
            "iterations": result.nit}


if __name__ == "__main__":
    main()
