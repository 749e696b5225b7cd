"""What Numba itself costs where two of symdiff's targets sit (issues 13 and 14), with no
symdiff code involved: the floors those targets meet.

1. An object-mode block: a jitted function whose ``numba.objmode`` block calls a NumPy
   function on 16 doubles and returns a fresh array, against calling that function
   from Python.  Issue 13's fallback target is at most 2 us above the function's own time.
2. Start-up: a new process that imports Numba, then defines and calls an
   ``@njit(cache=True)`` function whose machine code is already cached.  Issue 14's
   warm-start target is 0.15 s from building a function to its first result.

    python benchmarks/numba_floor_probe.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

ROUNDS = 15
CALLS = 10_000


def impl(v):
    return np.sqrt(v * v + 1.0)


def _per_call_us(fn, arg) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        fn(arg)
    return (time.perf_counter() - start) / CALLS * 1e6


def object_mode_block():
    import numba

    @numba.njit
    def through_objmode(x):
        with numba.objmode(r="float64[::1]"):
            r = impl(x)
        return r

    @numba.njit
    def plain(x):
        return x + 1.0

    x = np.random.default_rng(0).normal(size=16)
    fns = {"objmode block calling impl": through_objmode, "impl from Python": impl, "a jitted x + 1": plain}
    for fn in fns.values():
        fn(x)
    rounds = {name: [] for name in fns}
    for _ in range(ROUNDS):  # in turns: a difference of microsecond timings needs it
        for name, fn in fns.items():
            rounds[name].append(_per_call_us(fn, x))
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    for name, value in medians.items():
        print(f"{name:40s} {value:7.2f} us")
    print(f"{'objmode block above impl':40s} {medians['objmode block calling impl'] - medians['impl from Python']:7.2f} us")


STARTUP = textwrap.dedent("""
    import time
    import numpy as np
    import numba
    start = time.perf_counter()

    @numba.njit(cache=True)
    def f(x):
        return np.tanh(x).sum()

    f(np.ones(3))
    print(time.perf_counter() - start)
""")


def startup():
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "cached.py")
        with open(script, "w", encoding="utf-8") as handle:
            handle.write(STARTUP)
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(folder, "cache"))
        times = [float(subprocess.run([sys.executable, script], env=env, capture_output=True, text=True,
                                      check=True).stdout) for _ in range(6)]
    print(f"{'cold (first process: compiles)':40s} {times[0]:7.3f} s")
    print(f"{'warm (cache filled), median of 5':40s} {statistics.median(times[1:]):7.3f} s")


if __name__ == "__main__":
    object_mode_block()
    startup()
