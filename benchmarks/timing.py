"""Call-time measurement in the manner of ``timeit``: calibrate a loop count so one
repeat takes long enough for the clock, run several repeats with the garbage
collector off, report the median time per call."""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    min_repeat_s: float    # one repeat runs the call in a loop for at least this long
    repeats: int           # repeats wanted ...
    min_repeats: int       # ... but never fewer than this, whatever the budget
    budget_s: float        # soft cap on the time spent measuring one call
    warmup_calls: int


FULL = Settings(min_repeat_s=0.05, repeats=9, min_repeats=5, budget_s=1.5, warmup_calls=3)
QUICK = Settings(min_repeat_s=0.01, repeats=3, min_repeats=3, budget_s=0.3, warmup_calls=1)


def _loop(fn, args, number: int) -> float:
    timer = time.perf_counter
    start = timer()
    for _ in range(number):
        fn(*args)
    return timer() - start


def _loop_cpu(fn, args, number: int) -> tuple:
    """(wall, CPU) seconds of ``number`` calls.  CPU is the process's, all threads: on a shared
    machine a single-threaded call's CPU time is nearly immune to waiting for a core, while
    threads spinning for work (BLAS under contention) show up in it."""
    start_cpu, start = time.process_time(), time.perf_counter()
    for _ in range(number):
        fn(*args)
    return time.perf_counter() - start, time.process_time() - start_cpu


def measure(fn, args, settings: Settings) -> dict:
    """Median, min and max seconds per call of ``fn(*args)`` and how they were taken."""
    for _ in range(settings.warmup_calls):
        fn(*args)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        number = 1
        while True:  # 1, 2, 5, 10, 20, 50 ... calls, as timeit.autorange
            elapsed = _loop(fn, args, number)
            if elapsed >= settings.min_repeat_s:
                break
            number *= 2.5 if str(number)[0] == "2" else 2
            number = int(number)
        per_repeat = max(elapsed, 1e-9)
        repeats = int(min(settings.repeats, max(settings.min_repeats, settings.budget_s / per_repeat)))
        samples, cpu = [elapsed / number], []
        for _ in range(repeats - 1):
            wall, used = _loop_cpu(fn, args, number)
            samples.append(wall / number)
            cpu.append(used / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {
        "median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples),
        "repeats": len(samples), "calls_per_repeat": number,
        "cpu_median_s": statistics.median(cpu) if cpu else None,
    }
