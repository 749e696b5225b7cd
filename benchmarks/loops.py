"""Loops (issue 12): an Elman RNN h <- tanh(W h + U x_t + b), H = 32, inputs of size 8,
float64; the cost is sum(h_n).  Measures, for symdiff's compiled kernels:

- cold compile time (a fresh kernel cache, in a fresh process) of value+gradient for
  n = 100 and n = 100,000 steps (static lengths: two different graphs) and for a run-time
  length (``None``: one kernel for every n);
- per-call time of the value, value+gradient (wrt W, U, b) and an HVP through the loop
  (wrt W along a direction) at n = 10,000, and the bytes the reverse sweep stores;
- the same with JAX's ``lax.scan`` (jit, float64) when JAX is installed, and with the RNN
  written by hand in Numba (``hand_written``), in this run.  Times are the best of 15 calls.

    python benchmarks/loops.py              # all of it (about a minute)
    python benchmarks/loops.py --steps 1000 --no-compile
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

H, D = 32, 8


def build(n, what, checkpoint="all"):
    import symdiff as sd

    W, U, b = sd.matrix("W", (H, H)), sd.matrix("U", (H, D)), sd.vector("b", H)
    h0, X = sd.vector("h0", H), sd.matrix("X", (n, D))
    hT, _ = sd.scan(lambda h, x: (sd.tanh(W @ h + U @ x + b), None), h0, X, checkpoint=checkpoint)
    cost = sd.sum(hT)
    inputs = [W, U, b, h0, X]
    if what == "value":
        return sd.function(inputs, cost)
    if what == "grad":
        return sd.function(inputs, [cost, *sd.grad(cost, [W, U, b])])
    if what == "hvp":
        V = sd.matrix("V", (H, H))
        return sd.function(inputs + [V], sd.hvp(cost, W, V))
    raise ValueError(what)


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(H, H)))
    return [q * 0.9, rng.normal(0, 0.3, (H, D)), rng.normal(0, 0.1, H), np.zeros(H), rng.normal(size=(n, D))]


def best_of(fn, args, repeat=15):
    fn(*args)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def cold_compile(n) -> tuple:
    """Seconds (wall, CPU) to build and compile value+gradient in a fresh process with an
    empty kernel cache (after a warm-up function compiled there: Numba's own start-up is not
    the loop's).  CPU time is the fairer number on a shared machine."""
    code = (
        "import time, sys; sys.path.insert(0, %r)\n"
        "import symdiff as sd, loops\n"
        "q = sd.scalar('q'); sd.function([q], sd.sin(q) * 2)(1.0)\n"
        "start, cpu = time.perf_counter(), time.process_time(); loops.build(%s, 'grad')\n"
        "print(time.perf_counter() - start, time.process_time() - cpu)\n"
    ) % (os.path.dirname(os.path.abspath(__file__)), repr(n))
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, SYMDIFF_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    wall, cpu = (float(v) for v in out.stdout.strip().splitlines()[-1].split())
    return wall, cpu


def jax_times(n):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)

    def cost(W, U, b, h0, X):
        def cell(h, x):
            return jnp.tanh(W @ h + U @ x + b), None

        hT, _ = jax.lax.scan(cell, h0, X)
        return jnp.sum(hT)

    value = jax.jit(cost)
    value_grad = jax.jit(jax.value_and_grad(cost, argnums=(0, 1, 2)))
    args = [jnp.asarray(a) for a in data(n)]
    start = time.perf_counter()
    jax.block_until_ready(value_grad(*args))
    compile_seconds = time.perf_counter() - start

    def run(fn):
        return lambda *a: jax.block_until_ready(fn(*a))

    return {"compile value+grad": compile_seconds, "value": best_of(run(value), args),
            "value+grad": best_of(run(value_grad), args)}


def hand_written():
    """(value, value+grad, hvp) of the RNN written by hand in Numba, the baseline of the issue's
    "a hand-written Numba loop": the same algorithm as symdiff's kernels (U @ x for every step
    and the reverse sweep's pre-activations as gemms, tanh' = sech2 of the pre-activation, one
    W.T @ g per reverse step, W's cotangent by one gemm), calling the same BLAS, matrix-vector
    loops and vector math (symdiff's runtime intrinsics)."""
    from numba import njit

    from symdiff.backends.runtime import _gemm, _matvec
    from symdiff.backends.vector_math import _vm_sech2, _vm_tanh

    @njit(nogil=True, error_model="numpy")
    def forward(W, U, b, h0, X, tape):
        """The carries into ``tape``, cyclically (two rows keep the last two)."""
        n, rows = X.shape[0], tape.shape[0]
        ux = np.empty((n, H))
        _gemm(ux, X, U, n, H, D, 0, 1)
        tape[0] = h0
        wh, pre = np.empty(H), np.empty(H)
        for t in range(n):
            _matvec(wh, W, tape[t % rows], H, 1, H, 0, 0)
            for i in range(H):
                pre[i] = wh[i] + ux[t, i] + b[i]
            _vm_tanh(pre, tape[(t + 1) % rows])
        return ux

    @njit(nogil=True, error_model="numpy")
    def value(W, U, b, h0, X):
        tape = np.empty((2, H))
        forward(W, U, b, h0, X, tape)
        return tape[X.shape[0] % 2].sum()

    @njit(nogil=True, error_model="numpy")
    def value_grad(W, U, b, h0, X):
        n = X.shape[0]
        tape = np.empty((n + 1, H))
        ux = forward(W, U, b, h0, X, tape)
        pre, slope = np.empty((n, H)), np.empty((n, H))
        _gemm(pre, tape[:n], W, n, H, H, 0, 1)
        for t in range(n):
            for i in range(H):
                pre[t, i] += ux[t, i] + b[i]
        _vm_sech2(pre, slope)
        w_t = np.ascontiguousarray(W.T)
        g, g_next, gb = np.ones(H), np.empty(H), np.zeros(H)
        for s in range(n):
            t = n - 1 - s
            for i in range(H):
                slope[t, i] *= g[i]
                gb[i] += slope[t, i]
            _matvec(g_next, w_t, slope[t], H, 1, H, 0, 0)
            g, g_next = g_next, g
        gW, gU = np.empty((H, H)), np.empty((H, D))
        _gemm(gW, slope, tape[:n], H, H, n, 1, 0)
        _gemm(gU, slope, X, H, D, n, 1, 0)
        return tape[n].sum(), gW, gU, gb

    @njit(nogil=True, error_model="numpy")
    def hvp(W, U, b, h0, X, V):
        """The HVP wrt W along V, forward over reverse with each sweep one loop: the
        forward step carries (h, dh) and stores what the reverse step reads (h, dh, tanh'
        and its tangent: no recomputation); the reverse step carries (g, dg); W's
        cotangent's tangent by two gemms.  Six matrix-vector products a step (W h, W dh,
        V h; W.T ga, W.T dga, V.T ga) against the value's one."""
        n = X.shape[0]
        ux = np.empty((n, H))
        _gemm(ux, X, U, n, H, D, 0, 1)
        hs, dhs, slope, dslope = np.empty((n, H)), np.empty((n, H)), np.empty((n, H)), np.empty((n, H))
        h, dh = h0.copy(), np.zeros(H)
        wh, wdh, vh, pre, dpre, h_next = np.empty(H), np.empty(H), np.empty(H), np.empty(H), np.empty(H), np.empty(H)
        for t in range(n):
            hs[t], dhs[t] = h, dh
            _matvec(wh, W, h, H, 1, H, 0, 0)
            _matvec(wdh, W, dh, H, 1, H, 0, 0)
            _matvec(vh, V, h, H, 1, H, 0, 0)
            for i in range(H):
                pre[i] = wh[i] + ux[t, i] + b[i]
                dpre[i] = wdh[i] + vh[i]
            _vm_tanh(pre, h_next)
            _vm_sech2(pre, slope[t])
            for i in range(H):
                dh[i] = slope[t, i] * dpre[i]
                dslope[t, i] = -2.0 * h_next[i] * slope[t, i] * dpre[i]
                h[i] = h_next[i]
        w_t, v_t = np.ascontiguousarray(W.T), np.ascontiguousarray(V.T)
        ga, dga = np.empty((n, H)), np.empty((n, H))
        g, dg = np.ones(H), np.zeros(H)
        wg, wdg, vg = np.empty(H), np.empty(H), np.empty(H)
        for s in range(n):
            t = n - 1 - s
            for i in range(H):
                ga[t, i] = g[i] * slope[t, i]
                dga[t, i] = dg[i] * slope[t, i] + g[i] * dslope[t, i]
            _matvec(wg, w_t, ga[t], H, 1, H, 0, 0)
            _matvec(wdg, w_t, dga[t], H, 1, H, 0, 0)
            _matvec(vg, v_t, ga[t], H, 1, H, 0, 0)
            for i in range(H):
                g[i], dg[i] = wg[i], wdg[i] + vg[i]
        out, other = np.empty((H, H)), np.empty((H, H))
        _gemm(out, dga, hs, H, H, n, 1, 0)
        _gemm(other, ga, dhs, H, H, n, 1, 0)
        return out + other

    return value, value_grad, hvp


def revolve_steps(n: int, snapshots: int) -> int:
    """Steps the forward and reverse sweeps advance under ("binomial", snapshots): revolve's
    minimum T(n, s) = r n - C(s + r, s + 1) (r: the least with C(s + r, s) >= n), plus the
    forward sweep's last step, which revolve does not count (it starts the reverse sweep)."""
    from math import comb

    s = max(1, min(snapshots, n))
    r = 0
    while comb(s + r, s) < n:
        r += 1
    return r * n - comb(s + r, s + 1) + 1 if n > 1 else n


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--no-compile", action="store_true", help="skip the cold-compile measurements")
    args = parser.parse_args(argv)
    report = {}
    if not args.no_compile:
        for n in (100, 100_000, None):
            wall, cpu = cold_compile(n)
            report[f"cold compile value+grad, n={n} (wall s)"] = wall
            report[f"cold compile value+grad, n={n} (CPU s)"] = cpu
    n = args.steps
    values = data(n)
    value, grad, hvp = build(None, "value"), build(None, "grad"), build(None, "hvp")
    direction = np.random.default_rng(1).normal(size=(H, H))
    report["value"] = best_of(value, values)
    report["value+grad"] = best_of(grad, values)
    report["hvp"] = best_of(hvp, values + [direction])
    report["value+grad / value"] = report["value+grad"] / report["value"]
    report["hvp / value"] = report["hvp"] / report["value"]
    report["stored carries (checkpoint='all')"] = 2 * n  # each step's carry before and after it
    report["stored bytes (checkpoint='all')"] = 2 * n * H * 8
    sqrt_grad = build(None, "grad", "sqrt")
    report["value+grad, checkpoint='sqrt'"] = best_of(sqrt_grad, values)
    report["value+grad sqrt / value"] = report["value+grad, checkpoint='sqrt'"] / report["value"]
    k = max(1, int(np.sqrt(n)))
    stored = -(-n // k) + k  # the checkpoints and the carries after each step of one segment
    report["stored carries (checkpoint='sqrt')"] = stored
    report["stored carries sqrt / sqrt(n)"] = stored / np.sqrt(n)
    report["stored bytes (checkpoint='sqrt')"] = stored * H * 8
    for snapshots in (10, 100):
        name = f"checkpoint=('binomial', {snapshots})"
        report[f"value+grad, {name}"] = best_of(build(None, "grad", ("binomial", snapshots)), values)
        report[f"value+grad binomial {snapshots} / value"] = report[f"value+grad, {name}"] / report["value"]
        steps = revolve_steps(n, snapshots)
        report[f"steps advanced, {name} (revolve's minimum)"] = steps
        report[f"steps advanced / n, {name}"] = steps / n
        # the snapshots, the carries of steps j and j + 1 in the reverse sweep, the last step's carry
        report[f"stored bytes ({name})"] = (min(snapshots, n) + 3) * H * 8
    value_by_hand, grad_by_hand, hvp_by_hand = hand_written()
    want = grad(*values)
    assert all(np.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(grad_by_hand(*values), want))
    assert np.allclose(hvp_by_hand(*values, direction), hvp(*values, direction), rtol=1e-12, atol=1e-12)
    report["hand-written Numba value"] = best_of(value_by_hand, values)
    report["hand-written Numba value+grad"] = best_of(grad_by_hand, values)
    report["hand-written Numba hvp"] = best_of(hvp_by_hand, values + [direction])
    report["hand-written value+grad / value"] = report["hand-written Numba value+grad"] / report[
        "hand-written Numba value"]
    report["hand-written hvp / value"] = report["hand-written Numba hvp"] / report["hand-written Numba value"]
    jax_report = jax_times(n)
    if jax_report is None:
        report["jax"] = "not installed"
    else:
        report.update({f"jax {k}": v for k, v in jax_report.items()})
        report["jax value+grad / value"] = jax_report["value+grad"] / jax_report["value"]
        report["symdiff value+grad / jax value+grad"] = report["value+grad"] / jax_report["value+grad"]
    for key, v in report.items():
        print(f"{key:45s} {v:.4g}" if isinstance(v, float) else f"{key:45s} {v}")
    return report


if __name__ == "__main__":
    json.dumps(main())
