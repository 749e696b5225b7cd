"""Compiled convolution against its peers, and the design probe behind the ``conv`` primitive.

Peers (value, and value + gradient of sum(y * G) wrt input and filter), NCHW images
with 3x3 filters and 'same' padding, float64:

- symdiff: ``sd.function`` over ``sd.conv2d``, with static sizes and with the batch and
  image sizes None;
- NumPy im2col by hand: ``sliding_window_view`` + one matrix product; the gradient's
  input part as nine shifted slice updates, its filter part as one product;
- scipy.signal: ``correlate2d`` per (image, output channel, input channel), the
  gradient with ``convolve2d`` and ``correlate2d`` likewise;
- JAX: ``jax.jit`` of ``lax.conv_general_dilated`` (and ``jax.value_and_grad``), float64.
  XLA may use both cores; NumPy's BLAS (and so symdiff's gemm) too.

A peer that is not installed is skipped.  ``--design`` measures the alternative this
module's primitive replaced: composites of existing primitives (shifted slices summed
for 1-d; slices stacked, reshaped and multiplied for 2-d): nodes of value + gradient,
compile time and call time.

    python benchmarks/convolution.py             # peers and design probe
    python benchmarks/convolution.py --quick     # fewer repeats
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import FULL, QUICK, measure  # noqa: E402

import symdiff as sd  # noqa: E402

CASES = [  # (label, N, C, O, H)
    ("digits layer 1", 64, 1, 16, 8),
    ("digits layer 2", 64, 16, 32, 4),
    ("CIFAR-like first layer", 32, 3, 16, 32),
    ("mid layer", 8, 32, 64, 32),
]


# ----------------------------------------------------------------------------- peers


def numpy_im2col(x, w):
    n, c, h, width = x.shape
    o = w.shape[0]
    cols = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))  # n c h w 3 3
    cols = np.ascontiguousarray(cols.transpose(0, 2, 3, 1, 4, 5)).reshape(n * h * width, c * 9)
    return (cols @ w.reshape(o, -1).T).reshape(n, h, width, o).transpose(0, 3, 1, 2), cols


def numpy_value(x, w):
    return np.ascontiguousarray(numpy_im2col(x, w)[0])


def numpy_value_grad(x, w, g):
    n, c, h, width = x.shape
    y, cols = numpy_im2col(x, w)
    g_rows = g.transpose(0, 2, 3, 1).reshape(n * h * width, -1)
    dw = (g_rows.T @ cols).reshape(w.shape)
    dx = np.zeros((n, c, h + 2, width + 2))
    for i in range(3):
        for j in range(3):
            dx[:, :, i:i + h, j:j + width] += np.einsum("nohw,oc->nchw", g, w[:, :, i, j], optimize=True)
    return np.ascontiguousarray(y), dx[:, :, 1:-1, 1:-1], dw


def scipy_peers():
    try:
        from scipy import signal
    except ImportError:
        return None

    def value(x, w):
        out = np.zeros((x.shape[0], w.shape[0]) + x.shape[2:])
        for n in range(x.shape[0]):
            for o in range(w.shape[0]):
                for c in range(x.shape[1]):
                    out[n, o] += signal.correlate2d(x[n, c], w[o, c], "same")
        return out

    def value_grad(x, w, g):
        y = value(x, w)
        dx, dw = np.zeros_like(x), np.zeros_like(w)
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        for n in range(x.shape[0]):
            for o in range(w.shape[0]):
                for c in range(x.shape[1]):
                    dx[n, c] += signal.convolve2d(g[n, o], w[o, c], "same")
                    dw[o, c] += signal.correlate2d(xp[n, c], g[n, o], "valid")
        return y, dx, dw

    return value, value_grad


def jax_peers():
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax import lax

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "SAME")

    def loss(x, w, g):
        y = conv(x, w)
        return jnp.sum(y * g), y

    value = jax.jit(conv)
    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))

    def value_grad(x, w, g):
        (_, y), (dx, dw) = grad(x, w, g)
        return y.block_until_ready(), dx.block_until_ready(), dw.block_until_ready()

    return (lambda x, w: value(x, w).block_until_ready()), value_grad


def symdiff_functions(n, c, o, h, static: bool):
    x = sd.tensor("x", (n, c, h, h) if static else (None, c, None, None))
    w = sd.tensor("w", (o, c, 3, 3))
    g = sd.tensor("g", (n, o, h, h) if static else (None, o, None, None))
    y = sd.conv2d(x, w, padding="same")
    started = time.process_time()
    value = sd.function([x, w], y)
    value_grad = sd.function([x, w, g], [y, *sd.grad(sd.sum(y * g), [x, w])])
    return value, value_grad, time.process_time() - started


def check(label, got, want):
    for a, b in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-9, atol=1e-9, err_msg=label)


def run_peers(settings):
    rng = np.random.default_rng(0)
    scipy_fns, jax_fns = scipy_peers(), jax_peers()
    rows = []
    for label, n, c, o, h in CASES:
        x, w, g = rng.normal(size=(n, c, h, h)), rng.normal(size=(o, c, 3, 3)), rng.normal(size=(n, o, h, h))
        want_value, want_grad = numpy_value(x, w), numpy_value_grad(x, w, g)
        peers = {"NumPy im2col": (numpy_value, numpy_value_grad)}
        if scipy_fns:
            peers["scipy.signal loops"] = scipy_fns
        if jax_fns:
            peers["JAX jit"] = jax_fns
        for static in (True, False):
            value, value_grad, seconds = symdiff_functions(n, c, o, h, static)
            peers[f"symdiff ({'static' if static else 'None'} sizes)"] = (value, value_grad)
            print(f"# {label}: symdiff {'static' if static else 'None'} sizes compiled in {seconds:.2f} s CPU "
                  f"(value and value+grad kernels)", flush=True)
        for name, (value, value_grad) in peers.items():
            check(f"{label} {name} value", value(x, w), want_value)
            check(f"{label} {name} value+grad", value_grad(x, w, g), want_grad)
            v = measure(value, (x, w), settings)
            vg = measure(value_grad, (x, w, g), settings)
            rows.append((label, (n, c, o, h), name, v, vg))
            print(f"{label:24s} {name:28s} value {v['median_s'] * 1e3:9.3f} ms  value+grad "
                  f"{vg['median_s'] * 1e3:9.3f} ms", flush=True)
    print()
    print("| case | N, C, O, H | implementation | value ms | ratio | value+grad ms | ratio |")
    print("|---|---|---|---|---|---|---|")
    for label, shape, name, v, vg in rows:
        base = next(r for r in rows if r[0] == label and r[2] == "symdiff (static sizes)")
        print(f"| {label} | {', '.join(map(str, shape))} | {name} | {v['median_s'] * 1e3:.3f} | "
              f"{v['median_s'] / base[3]['median_s']:.2f} | {vg['median_s'] * 1e3:.3f} | "
              f"{vg['median_s'] / base[4]['median_s']:.2f} |")


# ---------------------------------------------------------------------- design probe


def composite_correlate(x, w):
    """Valid 1-d correlation as a sum of shifted slices (the composite alternative)."""
    m = w.type.shape[0]
    out = None
    for k in range(m):
        term = w[k] * x[k:-(m - 1 - k) or None]
        out = term if out is None else out + term
    return out


def composite_conv2d(x, w):
    """Valid 2-d cross-correlation as im2col from slices, stack and reshape, then matmul."""
    n, c, h, width = x.type.shape
    o, _, kh, kw = w.type.shape
    ho, wo = h - kh + 1, width - kw + 1
    windows = [x[:, :, i:i + ho, j:j + wo] for i in range(kh) for j in range(kw)]
    cols = sd.reshape(sd.stack(windows, axis=2), (-1, c * kh * kw, ho * wo))
    return sd.reshape(sd.reshape(w, (o, c * kh * kw)) @ cols, (-1, o, ho, wo))


def compiled_in_fresh_cache(inputs, outputs):
    """(function, CPU seconds to compile) with an empty kernel cache."""
    old = os.environ.get("SYMDIFF_CACHE_DIR")
    with tempfile.TemporaryDirectory() as directory:
        os.environ["SYMDIFF_CACHE_DIR"] = directory
        try:
            started = time.process_time()
            f = sd.function(inputs, outputs)
            return f, time.process_time() - started
        finally:
            if old is None:
                del os.environ["SYMDIFF_CACHE_DIR"]
            else:
                os.environ["SYMDIFF_CACHE_DIR"] = old


def run_design(settings):
    rng = np.random.default_rng(1)
    # warm the helpers so the primitive's compile time is its kernel's, like the composite's
    warm_x, warm_w = sd.vector("warm_x"), sd.vector("warm_w", 3)
    warm = sd.correlate(warm_x, warm_w)
    sd.function([warm_x, warm_w], [warm, *sd.grad(sd.sum(warm * warm), [warm_x, warm_w])])(np.ones(9), np.ones(3))
    print("| 1-d, n = 1e5 | taps | nodes (value+grad) | compile s CPU | value+grad ms |")
    print("|---|---|---|---|---|")
    size = 100_000
    for m in (5, 31, 101):
        x, w = sd.vector("x"), sd.vector("w", m)
        xv, wv = rng.normal(size=size), rng.normal(size=m)
        for name, build in (("composite", composite_correlate), ("primitive", sd.correlate)):
            y = build(x, w)
            outputs = [y, *sd.grad(sd.sum(y * y), [x, w])]
            f, seconds = compiled_in_fresh_cache([x, w], outputs)
            t = measure(f, (xv, wv), settings)
            print(f"| {name} | {m} | {sd.node_count(outputs)} | {seconds:.2f} | {t['median_s'] * 1e3:.3f} |",
                  flush=True)
    print()
    print("| 2-d valid, 3x3 | N, C, O, H | nodes (value+grad) | compile s CPU | value+grad ms |")
    print("|---|---|---|---|---|")
    for label, n, c, o, h in CASES[:3]:
        x, w = sd.tensor("x", (None, c, h + 2, h + 2)), sd.tensor("w", (o, c, 3, 3))
        g_value = rng.normal(size=(n, o, h, h))
        xv, wv = rng.normal(size=(n, c, h + 2, h + 2)), rng.normal(size=(o, c, 3, 3))
        results = []
        warm = sd.conv2d(x, w, padding=1)  # another kernel: the helpers are compiled once per process
        sd.function([x, w], [warm, *sd.grad(sd.sum(warm * warm), [x, w])])(xv, wv)
        for name, build in (("composite", composite_conv2d), ("primitive", sd.conv2d)):
            y = build(x, w)
            outputs = [y, *sd.grad(sd.sum(y * sd.constant(g_value)), [x, w])]
            f, seconds = compiled_in_fresh_cache([x, w], outputs)
            t = measure(f, (xv, wv), settings)
            results.append(f(xv, wv))
            print(f"| {name} {label} | {n}, {c}, {o}, {h} | {sd.node_count(outputs)} | {seconds:.2f} | "
                  f"{t['median_s'] * 1e3:.3f} |", flush=True)
        for a, b in zip(*results):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--design", action="store_true", help="only the design probe")
    parser.add_argument("--peers", action="store_true", help="only the peers")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    print(f"# load average {os.getloadavg()[0]:.1f}; NumPy {np.__version__}")
    if not args.design:
        run_peers(settings)
    if not args.peers:
        print()
        run_design(settings)


if __name__ == "__main__":
    main()
