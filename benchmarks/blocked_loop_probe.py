"""A first try at the blocked loop of docs/architecture.md ("Code generation"), by hand:
Rosenbrock 1e6 value+gradient as symdiff emits it ("current") against a version that
runs blocks of 1024 elements, buffering the sum's terms and the carries' terms, summing
each block with a reassociating helper and applying the carries in a second loop.

    python benchmarks/blocked_loop_probe.py
"""
import time

import numpy as np
from numba import njit
@njit(fastmath={"reassoc"}, nogil=True)
def block_sum(buf, n):
    s = 0.0
    for j in range(n):
        s += buf[j]
    return s
@njit(nogil=True)
def blocked(x):
    n0 = x.shape[0]; n1 = max(n0 - 1, 0)
    g = np.empty(n0)
    B = 1024
    rb = np.empty(B); c21 = np.empty(B); c18 = np.empty(B)
    r = 0.0; carry0 = 0.0; carry1 = 0.0
    for b0 in range(0, n1, B):
        b1 = min(b0 + B, n1)
        for i0 in range(b0, b1):
            j = i0 - b0
            v4 = x[i0] ** 2.0; v5 = x[i0 + 1] - v4; v6 = v5 ** 2.0; v8 = 100.0 * v6
            v10 = 1.0 - x[i0]; v11 = v10 ** 2.0; v12 = v8 + v11
            rb[j] = v12
            v14 = v10 * 2.0; v15 = v5 * 2.0; v16 = x[i0] * 2.0; v18 = 100.0 * v15
            v19 = -v18; v20 = v19 * v16; v21 = v20 - v14
            c21[j] = v21; c18[j] = v18
        r += block_sum(rb, b1 - b0)
        for i0 in range(b0, b1):
            j = i0 - b0
            carry0 += c21[j]
            carry1 = c18[j]
            g[i0] = carry0
            carry0 = carry1
    if n1 < n0:
        g[n1] = 0.0 + carry0
    return r, g
@njit(nogil=True)
def current(x):
    n0 = x.shape[0]; n1 = max(n0 - 1, 0)
    a22 = np.empty(n0); r13 = 0.0; a22_carry0 = 0.0
    for i0 in range(n1):
        v4 = x[i0] ** 2.0; v5 = x[i0 + 1] - v4; v6 = v5 ** 2.0; v8 = 100.0 * v6
        v10 = 1.0 - x[i0]; v11 = v10 ** 2.0; v12 = v8 + v11
        r13 += v12
        v14 = v10 * 2.0; v15 = v5 * 2.0; v16 = x[i0] * 2.0; v18 = 100.0 * v15
        v19 = -v18; v20 = v19 * v16; v21 = v20 - v14
        a22_carry0 += v21; a22_carry1 = v18; a22[i0] = a22_carry0; a22_carry0 = a22_carry1
    if n1 < n0:
        a22[n1] = 0.0 + a22_carry0
    return r13, a22
def main():
    x = np.random.default_rng(0).normal(size=1_000_000)
    r1, g1 = blocked(x); r2, g2 = current(x)
    print("gradients bitwise equal:", np.array_equal(g1, g2), "; sums differ by", abs(r1 - r2) / abs(r2))
    for rep in range(3):
        for name, f in [("current", current), ("blocked", blocked)]:
            ts=[]
            for _ in range(21):
                t=time.perf_counter(); f(x); ts.append(time.perf_counter()-t)
            print(name, f"{np.median(ts)*1e6:.0f} us")


if __name__ == "__main__":
    main()
