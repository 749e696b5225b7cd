"""Jitted scalar helpers for the special functions the C math library lacks.

The algorithms live in ``symdiff.ops.special_scalar`` as plain Python, which the NumPy
reference evaluator runs element by element; here the same functions are compiled by
Numba for the generated kernels (their inner helpers are made callable from jitted
code with ``register_jitable``), so both backends run one algorithm.  The kernels call
them from the ops' ``scalar_code`` (``_erfinv(x)``, ``_polygamma(n, x)``...); they
cannot be spelled as LLVM IR, so these ops end an IR region
(``scalar_ir.PYTHON_STATEMENT_OPS``).  Like the other runtime helpers they compile on
first use and are stored with the kernels that call them.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.extending import register_jitable

from ..ops import special_scalar as _scalar

# Numba compiles the algorithms of ops/special_scalar.py INTO cached kernels: that file is
# in cache.KERNEL_SOURCES, so the kernel cache key follows it.

for _helper in (_scalar._central, _scalar._tail_ratio, _scalar._half_square, _scalar._exp_half_square,
                _scalar._scaled_density,
                _scalar._is_integer, _scalar._split, _scalar._cot_pi, _scalar._horner, _scalar._digamma_root_series,
                _scalar._digamma_positive, _scalar.digamma, _scalar._scaled_hurwitz_zeta, _scalar._cot_derivative,
                _scalar._polygamma_positive, _scalar.ndtr, _scalar.log_ndtr, _scalar.log_ndtr_prime,
                _scalar._chebyshev, _scalar._mills_terms, _scalar._mills_tails, _scalar._mills_jet,
                _scalar._has_series, _scalar._series, _scalar._riccati, _scalar.log_ndtr_derivative, _scalar.erfinv,
                _scalar.polygamma, _scalar.over_squared_norm, _scalar.erfinv_slope,
                _scalar.over_hypot, _scalar.hermite_zeros_start, _scalar.hermite, _scalar._signed_hermite,
                _scalar.ndtr_derivative,
                _scalar._fine_square, _scalar.erf_derivative):
    register_jitable(_helper)

_ndtr_scalar, _log_ndtr_scalar, _log_ndtr_prime_scalar = _scalar.ndtr, _scalar.log_ndtr, _scalar.log_ndtr_prime
_erfinv_scalar, _polygamma_scalar = _scalar.erfinv, _scalar.polygamma
_erfinv_slope_scalar = _scalar.erfinv_slope
_log_ndtr_derivative_scalar = _scalar.log_ndtr_derivative
_ndtr_derivative_scalar = _scalar.ndtr_derivative
_erf_derivative_scalar = _scalar.erf_derivative
_over_squared_norm_scalar = _scalar.over_squared_norm
_over_hypot_scalar = _scalar.over_hypot


# The entry points convert to float64 before the call, so a float32 argument is computed
# exactly as the reference computes it (in float64, rounded by the caller).  Not float():
# Numba types float(float32) as float32.
@njit(nogil=True, error_model="numpy")
def _ndtr(x):
    return _ndtr_scalar(np.float64(x))


@njit(nogil=True, error_model="numpy")
def _log_ndtr(x):
    return _log_ndtr_scalar(np.float64(x))


@njit(nogil=True, error_model="numpy")
def _log_ndtr_prime(x):
    return _log_ndtr_prime_scalar(np.float64(x))


@njit(nogil=True, error_model="numpy")
def _log_ndtr_derivative(n, x):
    return _log_ndtr_derivative_scalar(n, np.float64(x))


@njit(nogil=True, error_model="numpy")
def _ndtr_derivative(n, x):
    return _ndtr_derivative_scalar(n, np.float64(x))


@njit(nogil=True, error_model="numpy")
def _erf_derivative(n, x):
    return _erf_derivative_scalar(n, np.float64(x))


@njit(nogil=True, error_model="numpy")
def _over_squared_norm(a, b):
    return _over_squared_norm_scalar(np.float64(a), np.float64(b))


@njit(nogil=True, error_model="numpy")
def _over_hypot(a, b):
    return _over_hypot_scalar(np.float64(a), np.float64(b))


@njit(nogil=True, error_model="numpy")
def _erfinv(x):
    return _erfinv_scalar(np.float64(x))


@njit(nogil=True, error_model="numpy")
def _erfinv_slope(x):
    return _erfinv_slope_scalar(np.float64(x))


@njit(nogil=True, error_model="numpy")
def _polygamma(n, x):
    return _polygamma_scalar(n, np.float64(x))


__all__ = ["_ndtr", "_ndtr_derivative", "_erf_derivative", "_log_ndtr", "_log_ndtr_prime", "_log_ndtr_derivative",
           "_erfinv", "_erfinv_slope", "_polygamma", "_over_squared_norm", "_over_hypot"]
