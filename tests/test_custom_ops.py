"""Users' ops (``sd.custom_op``) and derivative overrides (``sd.custom_vjp``,
``sd.custom_jvp``): the same guarantees as built-in ops (derivatives of every order,
both HVP modes, compiled kernels, printers, JSON, clear errors, a cache key that
follows the user's code).

Op names are unique per test: the registry is process-wide.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

import symdiff as sd
from symdiff.custom import CustomOpError, CustomOpWarning, code_hash
from symdiff.printers import GraphFormatError
from symdiff.testing import GradCheckError, check_grads, check_hvp, check_jvp, check_op

pytest.importorskip("numba")


def _softplus_scalar(x):
    if x > 0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


def _softplus_samples(rng):
    return [((rng.normal(size=()),), {}), ((rng.normal(size=(4,)) * 3,), {}), ((rng.normal(size=(2, 3)),), {})]


my_softplus = sd.custom_op(
    "test_softplus", lambda x: np.logaddexp(0, x), elementwise=True,
    vjp=lambda g, out, x: g * sd.sigmoid(x), numba=_softplus_scalar, samples=_softplus_samples)


def _cumsum_numba(x, out):
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i]
        out[i] = total


def _reverse_cumsum(g):
    return my_cumsum(g[::-1])[::-1]


my_cumsum = sd.custom_op(
    "test_cumsum", lambda x: np.cumsum(x), infer=lambda t: t,
    vjp=lambda g, out, x: _reverse_cumsum(g), jvp=lambda ts, out, x: my_cumsum(ts[0]),
    numba=_cumsum_numba, samples=lambda rng: [((rng.normal(size=5),), {})])

# No numba=: the compiled function calls impl between kernels (from object mode inside a loop body).
slow_square = sd.custom_op("test_slow_square", lambda x: x * x, elementwise=True,
                           vjp=lambda g, out, x: g * 2 * x,
                           samples=lambda rng: [((rng.normal(size=(3,)),), {})])


def test_check_op_runs_the_registry_checks_on_user_ops():
    check_op(my_softplus)
    check_op(my_cumsum)
    check_op(slow_square, compiled=False)  # compiled below, where its warning is checked


def test_an_elementwise_user_op_fuses_into_the_loop_and_matches_the_builtin():
    x = sd.vector("x")
    ours, builtin = sd.sum(my_softplus(x) ** 2), sd.sum(sd.softplus(x) ** 2)
    outputs = [ours, sd.grad(ours, x), builtin, sd.grad(builtin, x), sd.hvp(ours, [x], [x])[0]]
    f = sd.function([x], outputs)
    assert "_sd_numba_test_softplus(" in f.source and "objmode" not in f.source
    point = np.linspace(-40, 40, 101)
    got = f(point)
    np.testing.assert_allclose(got[0], got[2], rtol=1e-14)
    np.testing.assert_allclose(got[1], got[3], rtol=1e-14, atol=0)
    reference = sd.evaluate(outputs, {x: point})
    for g, w in zip(got, reference):
        np.testing.assert_allclose(g, w, rtol=1e-13)


def test_a_user_op_with_unknown_sizes_preallocates_from_its_type_rule():
    x = sd.vector("x")
    y = sd.sum(my_cumsum(x) ** 2)
    f = sd.function([x], [y, sd.grad(y, x)])
    for n in (1, 7):
        point = np.arange(n, dtype=float) - 2.5
        value, gradient = f(point)
        want = np.cumsum(point)
        assert value == pytest.approx(np.sum(want ** 2))
        np.testing.assert_allclose(gradient, np.cumsum((2 * want)[::-1])[::-1])


def test_without_numba_the_kernel_calls_impl_and_warns_once():
    x = sd.vector("x")
    with pytest.warns(CustomOpWarning, match="test_slow_square.*calls its impl from Python between kernels"):
        f = sd.function([x], [slow_square(x), sd.grad(sd.sum(slow_square(x)), x)])
    value, gradient = f(np.array([1.0, -2.0]))
    np.testing.assert_array_equal(value, [1.0, 4.0])
    np.testing.assert_array_equal(gradient, [2.0, -4.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", CustomOpWarning)
        sd.function([x], [slow_square(x) + 1])  # the same op: no second warning


_CALLS: list = []  # what the logging impls below were called with


def _logged_square(x):
    _CALLS.append((type(x), getattr(x, "dtype", None), np.shape(x)))
    return x * x


logged_square = sd.custom_op("test_logged_square", _logged_square, elementwise=True,
                             vjp=lambda g, out, x: g * 2 * x)
slow_sum_of_squares = sd.custom_op("test_slow_sumsq", lambda v: np.sum(v * v), infer=lambda t: sd.TensorType(t.dtype, ()),
                                   vjp=lambda g, out, v: g * 2 * v)


@pytest.mark.filterwarnings("ignore::symdiff.custom.CustomOpWarning")
def test_impl_calls_run_between_kernels_and_match_the_reference():
    """Calls before, between and after kernels: a chain of two calls, a 0-d result, a
    constant argument, a call's result returned twice and used by a kernel."""
    x, w = sd.vector("x"), sd.vector("w")
    first = slow_square(sd.sin(x) * w)
    chained = logged_square(first + sd.constant(np.array([1.0, 2.0, 3.0])))
    total = slow_sum_of_squares(chained) + sd.sum(first * w)
    outputs = [total, chained, chained, *sd.grad(total, [x, w]), slow_square(sd.constant(np.array([2.0, -1.0])))]
    compiled = sd.function([x, w], outputs)
    reference = sd.function([x, w], outputs, backend="numpy")
    assert "objmode" not in compiled.source and "kernel 2 of the function" in compiled.source
    point = (np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.25, -0.5]))
    got, want = compiled(*point), reference(*point)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    assert isinstance(got[0], float)
    assert not np.shares_memory(got[1], got[2])


@pytest.mark.filterwarnings("ignore::symdiff.custom.CustomOpWarning")
def test_inputs_are_checked_before_any_impl_sees_them():
    x = sd.vector("x", 3)
    f = sd.function([x], logged_square(x))
    _CALLS.clear()
    np.testing.assert_array_equal(f([1, 2, 3]), [1.0, 4.0, 9.0])  # a list of ints: converted first
    assert _CALLS == [(np.ndarray, np.dtype("float64"), (3,))]
    _CALLS.clear()
    with pytest.raises(sd.ShapeError, match="x"):
        f(np.ones(4))  # the declared size is checked before the impl runs
    with pytest.raises(TypeError, match="x"):
        f("text")
    assert _CALLS == []


@pytest.mark.filterwarnings("ignore::symdiff.custom.CustomOpWarning")
def test_errors_after_an_impl_call_name_the_node_and_line():
    x, y = sd.vector("x"), sd.vector("y")
    added = logged_square(x) + y
    line = added.where()
    f = sd.function([x, y], added)
    with pytest.raises(sd.ShapeError, match=f"add at {line}.*\\(2,\\).*\\(3,\\)"):
        f(np.ones(2), np.ones(3))

    def failing(v):
        _CALLS.append("failing")
        raise ValueError("the user's own error")

    op = sd.custom_op("test_failing_impl", failing, elementwise=True)
    g = sd.function([x], op(x) * 2)
    _CALLS.clear()
    with pytest.raises(ValueError, match="the user's own error"):
        g(np.ones(2))
    assert _CALLS == ["failing"]  # called once: a user's error does not retry the call
    wrong = sd.custom_op("test_wrong_shape_impl", lambda v: v[:1] * 1.0, elementwise=True)
    h = sd.function([x], wrong(x) + 1)
    with pytest.raises(CustomOpError, match="test_wrong_shape_impl.*shape \\(1,\\).*shape \\(2,\\)"):
        h(np.ones(2))


@pytest.mark.filterwarnings("ignore::symdiff.custom.CustomOpWarning")
def test_impl_calls_get_what_the_reference_gives_them():
    """Found by review: run-time sizes of several inputs, 0-d inputs as 0-d arrays of the
    input's dtype, attributes of any value, read-only results, an impl that writes its input
    or returns an array it keeps, inputs named like builtins, a function of no inputs."""
    x, y, s = sd.vector("x"), sd.vector("y"), sd.scalar("s")
    v = np.array([1.0, 2.0, 3.0])
    add = sd.custom_op("test_review_add", lambda a, b: a + b, elementwise=True)
    np.testing.assert_array_equal(sd.function([x, y], add(x, y))(v, 2 * v), 3 * v)
    with pytest.raises(sd.ShapeError, match="test_review_add at"):
        sd.function([x, y], add(x, y))(v, np.ones(2))
    inc = sd.custom_op("test_review_inc", lambda a: a + 1, infer=lambda t: t)
    assert sd.function([s], inc(s))(2) == 3.0  # an int for a float64 scalar: impl sees a float64 0-d array
    assert sd.function([s], inc(s) * 2)(2) == 6.0
    scale = sd.custom_op("test_review_scale", lambda a, k=1.0: a * k, infer=lambda t, **kw: t)
    for k in (np.float64(2.0), float("inf")):
        got = sd.function([x], scale(x, k=k) + 0.0)(v)
        np.testing.assert_array_equal(got, v * k)
        looped = sd.fori_loop(0, 2, lambda i, c: scale(c, k=k), x)  # object mode in the loop body
        np.testing.assert_array_equal(sd.function([x], looped)(v), v * k * k)
    with pytest.raises(CustomOpError, match="identifiers"):
        scale(x, **{"lambda": 1.0})
    read_only = sd.custom_op("test_review_frombuffer", lambda a: np.frombuffer((a * 2).tobytes()), elementwise=True)
    np.testing.assert_array_equal(sd.function([x], read_only(x) * 2.0)(v), 4 * v)
    assert sd.function([x], read_only(x))(v).flags.writeable

    def writes(a):
        a[0] = 99.0
        return a * 2

    given = v.copy()
    with pytest.raises(CustomOpError, match="test_review_writes.*writes to one of its inputs"):
        sd.function([x], sd.custom_op("test_review_writes", writes, elementwise=True)(x))(given)
    np.testing.assert_array_equal(given, v)
    kept = np.arange(3.0)
    got = sd.function([x], sd.custom_op("test_review_kept", lambda a: kept, elementwise=True)(x))(v)
    got[0] = -1.0
    assert kept[0] == 0.0
    named = sd.vector("type")
    np.testing.assert_array_equal(sd.function([named], slow_square(named) + named)(v), v * v + v)
    assert sd.function([sd.scalar("float")], sd.scalar("float") * 2)(3.0) == 6.0
    np.testing.assert_array_equal(sd.function([], sd.constant(np.array([1.0, 2.0])) * 2)(), [2.0, 4.0])


@pytest.mark.filterwarnings("ignore::symdiff.custom.CustomOpWarning")
def test_second_review_attributes_loop_bodies_and_users_errors():
    x, s = sd.vector("x"), sd.scalar("s")
    v = np.array([1.0, 2.0, 3.0])
    times = sd.custom_op("test_review2_times", lambda a, k=1.0: a * k, infer=lambda t, **kw: t)
    assert times(x, k=0.0) is not times(x, k=-0.0) and times(x, k=1) is not times(x, k=True)
    assert sd.function([s], 1.0 / times(s, k=-0.0))(2.0) == -np.inf
    with pytest.raises(CustomOpError, match="not hashable"):
        times(x, k=[1.0])
    for k in (float("inf"), np.float32(2.5), np.int64(3)):
        again = sd.from_json(sd.to_json(times(x, k=k)))["out"]
        assert again.params["k"] == k and type(again.params["k"]) is type(k)

    def scaled(a, out, k=2.0):
        for i in range(a.shape[0]):
            out[i] = a[i] * k

    with_default = sd.custom_op("test_review2_default", lambda a, k=2.0: a * k, infer=lambda t, **kw: t,
                                numba=scaled)
    np.testing.assert_array_equal(sd.function([x], with_default(x))(v), 2 * v)
    buffer = np.zeros(3)

    def halve_into_buffer(a):
        np.multiply(a, 0.5, out=buffer)
        return buffer

    halve = sd.custom_op("test_review2_buffer", halve_into_buffer, elementwise=True)
    final, _ = sd.scan(lambda c, t: (halve(c), None), x, length=3)  # a loop body: object mode
    f = sd.function([x], final)
    first = f(v)
    np.testing.assert_array_equal(first, v / 8)
    f(2 * v)
    np.testing.assert_array_equal(first, v / 8)  # not the impl's buffer, overwritten by the second call
    calls = []

    def failing(a):
        calls.append(1)
        raise ValueError("the user's own error")

    fails = sd.custom_op("test_review2_fails", failing, elementwise=True)
    for compiled in (sd.function([x], sd.scan(lambda c, t: (fails(c), None), x, length=2)[0]),
                     sd.function([x], fails(x) * 2)):
        for given in (v, [1.0, 2.0, 3.0]):  # the fast path, and the slow one (a list is converted)
            calls.clear()
            with pytest.raises(ValueError, match="the user's own error"):
                compiled(given)
            assert calls == [1]
    sized = sd.vector("sized", 6)
    sparse = sd.jacobian(slow_square(sized * 2.0), sized, sparse=True)  # elementwise: a diagonal pattern
    assert sparse.pattern.nnz == 6
    np.testing.assert_array_equal(sparse.evaluate({sized: np.arange(6.0)}, "dense"), np.diag(8.0 * np.arange(6.0)))
    user_abs = sd.custom_op("Abs", lambda a: -a, elementwise=True)  # named like a SymPy function
    assert sd.evaluate(sd.from_sympy(sd.to_sympy(user_abs(s)), {"s": s}), {s: 3.0}) == -3.0


@pytest.mark.filterwarnings("ignore::symdiff.custom.CustomOpWarning")
def test_an_impl_op_whose_result_size_only_the_result_knows():
    """Between kernels the result's size is read off the result (a unique count); the next
    kernel takes it as a value of run-time size.  A result of the wrong rank is an error."""
    unique = sd.custom_op("test_unique", lambda a: np.unique(a), infer=lambda t: sd.TensorType(t.dtype, (None,)))
    x = sd.vector("x")
    f = sd.function([x], [unique(x), sd.sum(unique(x) ** 2)])
    values, total = f(np.array([3.0, 1.0, 3.0, 2.0]))
    np.testing.assert_array_equal(values, [1.0, 2.0, 3.0])
    assert total == 14.0
    np.testing.assert_array_equal(sd.evaluate(unique(x), {x: np.array([2.0, 2.0])}), [2.0])  # the reference too
    y = sd.vector("y")
    with pytest.raises(sd.ShapeError, match="add at"):  # the size the result brings is checked like any other
        sd.function([x, y], unique(x) + y)(np.array([1.0, 1.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    rows = sd.matrix("rows", (None, 3))
    with pytest.raises(CustomOpError, match="apply the op outside the loop"):
        sd.function([rows], sd.scan(lambda c, r: (c + sd.sum(unique(r)), None), sd.constant(0.0), rows)[0])
    wrong = sd.custom_op("test_wrong_rank", lambda a: np.zeros((2, 2)), infer=lambda t: sd.TensorType(t.dtype, (None,)))
    with pytest.raises(CustomOpError, match=r"test_wrong_rank.*shape \(2, 2\).*shape \(\?,\)"):
        sd.function([x], wrong(x) + 1)(np.ones(3))


def test_a_numba_function_with_attributes_that_does_not_compile_names_the_op_and_reason():
    def kernel(x, out, k=1.0):
        for i in range(x.shape[0]):
            out[i] = x[i] * k * undefined_name  # noqa: F821

    op = sd.custom_op("test_review_numba_attrs", lambda a, k=1.0: a * k, infer=lambda t, **kw: t, numba=kernel)
    with pytest.raises(CustomOpError, match="test_review_numba_attrs.*undefined_name"):
        sd.function([sd.vector("x")], op(sd.vector("x"), k=2.0))


@pytest.mark.filterwarnings("ignore::symdiff.custom.CustomOpWarning")
def test_an_impl_call_in_a_loop_body_runs_from_object_mode():
    xs = sd.vector("xs")
    final, ys = sd.scan(lambda c, xt: (c + slow_square(xt), c), sd.constant(0.0), xs)
    f = sd.function([xs], [final, ys])
    assert "objmode" in f.source
    final_value, ys_value = f(np.array([1.0, 2.0, 3.0]))
    assert final_value == 14.0
    np.testing.assert_array_equal(ys_value, [0.0, 1.0, 5.0])


@pytest.mark.filterwarnings("ignore::symdiff.custom.CustomOpWarning")
@pytest.mark.parametrize("impl", [lambda v: v, lambda v: v[:], lambda v: v.reshape(v.shape)],
                         ids=["itself", "a view", "a reshape"])
def test_a_fallback_result_never_aliases_the_users_array(impl):
    """An impl that returns its input (or a view of it) gave a compiled output sharing
    memory with the caller's array; the reference evaluator returns a copy."""
    op = sd.custom_op(f"test_alias_{next(_ALIAS_NAMES)}", impl, elementwise=True)
    x = sd.vector("x")
    f = sd.function([x], op(x))
    given = np.array([1.0, 2.0, 3.0])
    out = f(given)
    np.testing.assert_array_equal(out, given)
    assert not np.shares_memory(out, given)
    out[0] = 99.0
    assert given[0] == 1.0


_ALIAS_NAMES = iter(range(10**6))


def test_forward_mode_and_both_hvp_modes_come_from_a_vjp_rule_alone():
    lse = sd.custom_op("test_lse_vjp_only", lambda x: np.log(np.sum(np.exp(x))),
                       infer=lambda t: sd.TensorType(t.dtype, ()),
                       vjp=lambda g, out, x: g * sd.exp(x - out))
    x = sd.vector("x", 4)
    point = {x: np.array([0.3, -1.0, 2.0, 0.5])}
    check_grads(lse(x), x, point, order=3)
    check_jvp(lse(x), x, point, order=2)
    check_hvp(lse(x), x, point)
    hessian = sd.evaluate(sd.hessian(lse(x), x), point)
    np.testing.assert_allclose(hessian, sd.evaluate(sd.hessian(sd.logsumexp(x), x), point), rtol=1e-13)


def test_reverse_mode_comes_from_a_jvp_rule_alone():
    cube = sd.custom_op("test_cube_jvp_only", lambda x: x ** 3, elementwise=True,
                        jvp=lambda ts, out, x: ts[0] * 3 * x * x)
    x = sd.vector("x", 3)
    check_grads(sd.sum(cube(x)), x, {x: [0.5, -1.0, 2.0]}, order=3)
    check_hvp(sd.sum(cube(x) * x), x, {x: [0.5, -1.0, 2.0]})


def test_custom_vjp_replaces_the_derivative_of_its_body():
    @sd.custom_vjp
    def stable_log1pexp(x):
        return sd.log(1 + sd.exp(x))  # overflows at large x; its derivative would be nan

    stable_log1pexp.defvjp(lambda g, out, x: (g * sd.sigmoid(x),))
    x = sd.vector("x")
    y = sd.sum(stable_log1pexp(x))
    point = np.array([-3.0, 0.0, 800.0])
    gradient = sd.evaluate(sd.grad(y, x), {x: point})
    np.testing.assert_allclose(gradient, 1 / (1 + np.exp(-point)))
    # forward mode without a jvp rule, and its second derivative, against the rule's own derivative
    small = np.array([-1.0, 0.5])
    tangent = sd.evaluate(sd.jvp(stable_log1pexp(x), x, np.ones(2)), {x: small})
    np.testing.assert_allclose(tangent, 1 / (1 + np.exp(-small)), rtol=1e-15)
    check_hvp(y, x, {x: small})
    compiled = sd.function([x], sd.grad(y, x))(point)
    np.testing.assert_allclose(compiled, gradient, rtol=1e-15)


def test_custom_vjp_rules_may_ignore_some_inputs_and_stop_nothing_else():
    @sd.custom_vjp
    def scaled(x, s):
        return x * s

    scaled.defvjp(lambda g, out, x, s: (g * s, None))  # s treated as a constant
    x, s = sd.vector("x", 2), sd.scalar("s")
    dx, ds = sd.grad(sd.sum(scaled(x, s) * x), [x, s])
    got = sd.evaluate([dx, ds], {x: [1.0, 2.0], s: 3.0})
    np.testing.assert_allclose(got[0], [3.0 * 1 + 3.0, 3.0 * 2 + 6.0])  # s * x from the rule, + x * s directly
    assert got[1] == 0.0


def test_a_rule_that_is_not_linear_in_the_cotangent_is_linearised_at_zero_in_forward_mode():
    @sd.custom_vjp
    def clip_gradient(x):
        return x + 0.0

    clip_gradient.defvjp(lambda g, out, x: (sd.clip(g, -1.0, 1.0),))
    x = sd.vector("x", 2)
    point = {x: [1.0, 2.0]}
    assert np.all(sd.evaluate(sd.grad(sd.sum(clip_gradient(x) * 5.0), x), point) == 1.0)  # reverse: clipped
    np.testing.assert_array_equal(sd.evaluate(sd.jvp(clip_gradient(x) * 5.0, x, [1.0, 1.0]), point), [5.0, 5.0])


def test_custom_jvp_gives_a_safe_derivative_at_a_kink():
    @sd.custom_jvp
    def safe_norm(x):
        return sd.sqrt(sd.sum(x * x))

    safe_norm.defjvp(lambda ts, out, x: sd.sum(x * ts[0]) / sd.maximum(out, 1e-300))
    x = sd.vector("x", 3)
    np.testing.assert_array_equal(sd.evaluate(sd.grad(safe_norm(x), x), {x: np.zeros(3)}), np.zeros(3))
    point = {x: [1.0, -2.0, 0.5]}
    check_grads(safe_norm(x), x, point, order=2)
    check_hvp(safe_norm(x), x, point)


def test_a_wrong_rule_is_caught_by_check_op():
    wrong = sd.custom_op("test_wrong_rule", lambda x: np.sin(x), elementwise=True,
                         vjp=lambda g, out, x: g * sd.cos(x) * 1.001,
                         samples=lambda rng: [((rng.uniform(0.1, 1.0, size=3),), {})])
    with pytest.raises(GradCheckError, match="test_wrong_rule"):
        check_op(wrong, compiled=False)


def test_bad_definitions_are_clear_errors_naming_the_op():
    with pytest.raises(CustomOpError, match="'exp'.*already registered.*built-in"):
        sd.custom_op("exp", np.exp, elementwise=True)
    sd.custom_op("test_twice", np.exp, elementwise=True)
    with pytest.raises(CustomOpError, match="'test_twice'.*already registered"):
        sd.custom_op("test_twice", np.exp, elementwise=True)
    with pytest.raises(CustomOpError, match="'test_no_type'.*infer="):
        sd.custom_op("test_no_type", np.exp)


def test_a_rule_of_the_wrong_shape_names_the_op():
    bad = sd.custom_op("test_bad_shape", lambda x: np.sum(x), infer=lambda t: sd.TensorType(t.dtype, ()),
                       vjp=lambda g, out, x: g)  # should be broadcast to x's shape
    x = sd.vector("x", 3)
    with pytest.raises(sd.GradientError, match="test_bad_shape.*f64\\[\\]"):
        sd.grad(bad(x), x)


def test_an_impl_of_the_wrong_dtype_is_an_error_in_both_backends():
    bad = sd.custom_op("test_bad_dtype", lambda x: (x * 2).astype(np.float32), elementwise=True)
    x = sd.vector("x")
    with pytest.raises(CustomOpError, match="test_bad_dtype.*float32.*float64"):
        sd.evaluate(bad(x), {x: [1.0, 2.0]})
    with pytest.warns(CustomOpWarning):
        f = sd.function([x], bad(x) + 1)
    with pytest.raises(CustomOpError, match="test_bad_dtype.*float32.*float64"):
        f(np.array([1.0, 2.0]))


def test_a_numba_function_that_does_not_compile_names_the_op():
    def broken(x):
        return x.no_such_attribute

    bad = sd.custom_op("test_broken_numba", np.exp, elementwise=True, numba=broken)
    x = sd.vector("x")
    with pytest.raises(CustomOpError, match="test_broken_numba.*does not compile.*float64"):
        sd.function([x], bad(x))


def test_differentiating_an_op_without_rules_is_an_error_naming_it():
    plain = sd.custom_op("test_no_rules", np.exp, elementwise=True)
    x = sd.vector("x", 2)
    for build in (lambda: sd.grad(sd.sum(plain(x)), x), lambda: sd.jvp(plain(x), x, [1.0, 1.0])):
        with pytest.raises(sd.GradientError, match="test_no_rules.*no derivative rule"):
            build()


def test_printers_show_user_ops_and_json_needs_them_registered():
    x = sd.vector("x", 3)
    y = my_softplus(x)
    assert "test_softplus x" in sd.to_text(y)
    (again,) = sd.from_json(sd.to_json(y)).values()
    assert again is y
    document = json.loads(sd.to_json(y))
    for record in document["nodes"]:
        if record["op"] == "test_softplus":
            record["op"] = "test_never_registered"
    with pytest.raises(GraphFormatError, match="test_never_registered.*not registered.*custom_op"):
        sd.from_json(json.dumps(document))
    s = sd.scalar("s")
    scalar = my_softplus(s) + 1  # SymPy and LaTeX: an undefined function of the op's name, mapped back
    assert str(sd.to_sympy(scalar)) == "test_softplus(s) + 1"
    assert r"\operatorname{test}_{softplus}{\left(s \right)}" in sd.to_latex(scalar)
    assert sd.evaluate(sd.from_sympy(sd.to_sympy(scalar), {"s": s}), {s: 0.5}) == sd.evaluate(scalar, {s: 0.5})


def test_rewrites_treat_user_ops_as_opaque():
    folded = sd.optimize(sd.exp(sd.constant(1.0)))
    kept = sd.optimize(my_softplus(sd.constant(1.0)))
    assert folded.op.name == "constant" and kept.op.name == "test_softplus"


def test_the_cache_key_follows_the_users_code():
    def helper(x):
        return x + 1.0

    def first(x):
        return helper(x) * 2.0

    before = code_hash(first)

    def helper(x):  # noqa: F811  (the user edits a function that ``first`` calls)
        return x + 2.0

    assert code_hash(first) != before
    edited = sd.custom_op("test_hash_a", lambda x: x + 1, elementwise=True, numba=lambda x: x + 1.0)
    other = sd.custom_op("test_hash_b", lambda x: x + 1, elementwise=True, numba=lambda x: x + 2.0)
    x = sd.vector("x")
    a = sd.function([x], edited(x)).source
    b = sd.function([x], other(x)).source
    assert edited.record.code_hash in a and other.record.code_hash in b
    assert edited.record.code_hash != other.record.code_hash


def test_a_kernel_built_for_other_code_refuses_to_run_it():
    from symdiff.backends.custom import user_function

    with pytest.raises(CustomOpError, match="other code of custom op .test_softplus"):
        user_function("test_softplus", "0" * 16, "numba")
    with pytest.raises(CustomOpError, match="test_gone.*not registered"):
        user_function("test_gone", "0" * 16, "numba")


def test_the_custom_op_example_fits_and_prints_the_kernel():
    import pathlib
    import subprocess
    import sys

    example = pathlib.Path(__file__).resolve().parent.parent / "examples" / "custom_op.py"
    result = subprocess.run([sys.executable, str(example), "20000"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "check_op(log1mexp): passed" in result.stdout
    rate = float(result.stdout.split("fitted rate ")[1].split()[0])
    assert abs(rate - 0.35) < 0.02
    assert "_sd_numba_log1mexp(" in result.stdout


def test_the_cli_shows_a_user_op_by_name(tmp_path):
    import subprocess
    import sys

    model = tmp_path / "model.py"
    model.write_text(
        "import math\nimport numpy as np\nimport symdiff as sd\n\n"
        "softplus = sd.custom_op('cli_softplus', lambda x: np.logaddexp(0, x), elementwise=True,\n"
        "                        vjp=lambda g, out, x: g * sd.sigmoid(x))\n\n\n"
        "def loss():\n    x = sd.vector('x', 2)\n    return sd.sum(softplus(x) * x)\n")
    result = subprocess.run([sys.executable, "-m", "symdiff", "grad", "--file", f"{model}:loss", "--at", "x=[1,2]"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "cli_softplus x" in result.stdout and "bprop of %1 (cli_softplus)" in result.stdout


# --- regressions from a hostile review


def test_edited_globals_closures_and_module_helpers_change_the_code_hash():
    import types

    from symdiff.custom import code_hash

    helpers = types.ModuleType("helpers")
    exec("C = 2.0\ndef helper(x):\n    return x * C\n", helpers.__dict__)
    namespace = {"helpers": helpers, "SCALE": 2.0}
    exec("def nb(x):\n    return helpers.helper(x) * SCALE\n", namespace)
    before = code_hash(namespace["nb"])
    namespace["SCALE"] = 3.0
    after_global = code_hash(namespace["nb"])
    exec("C = 5.0", helpers.__dict__)
    after_module = code_hash(namespace["nb"])
    assert len({before, after_global, after_module}) == 3

    def make(k):
        return lambda x: x * k

    assert code_hash(make(np.int64(2))) != code_hash(make(np.int64(3)))
    assert code_hash(make(np.ones(2))) != code_hash(make(np.zeros(2)))


def test_a_result_size_the_kernel_cannot_compute_is_refused_not_written_out_of_bounds():
    def padadd(x, y):
        out = np.zeros(max(len(x), len(y)))
        out[:len(x)] += x
        out[:len(y)] += y
        return out

    def padadd_numba(x, y, out):
        for i in range(out.shape[0]):
            out[i] = (x[i] if i < x.shape[0] else 0.0) + (y[i] if i < y.shape[0] else 0.0)

    def infer(tx, ty):
        n, m = tx.shape[0], ty.shape[0]
        return sd.TensorType(tx.dtype, (None if None in (n, m) else max(n, m),))

    op = sd.custom_op("test_padadd", padadd, infer=infer, numba=padadd_numba)
    x, y = sd.vector("x"), sd.vector("y")
    with pytest.raises(CustomOpError, match="test_padadd.*cannot tell its result's size"):
        sd.function([x, y], op(x, y))
    static = sd.function([sd.vector("a", 5), sd.vector("b", 2)], op(sd.vector("a", 5), sd.vector("b", 2)))
    np.testing.assert_array_equal(static(np.arange(1.0, 6.0), np.array([10.0, 20.0])), [11, 22, 3, 4, 5])


def test_elementwise_user_ops_promote_ints_and_refuse_attributes_they_cannot_pass():
    x = sd.vector("x", dtype="int64")
    y = my_softplus(x)
    assert y.dtype == "float64"
    np.testing.assert_allclose(sd.function([x], y)(np.array([1, 2])), np.logaddexp(0, [1.0, 2.0]))
    with pytest.raises(CustomOpError, match="test_softplus.*takes no attributes"):
        my_softplus(sd.vector("z"), p=3.0)


def test_custom_vjp_functions_made_by_a_factory_get_distinct_names_when_first_used():
    def make(k):
        @sd.custom_vjp
        def scaled_gradient(x):
            return x * 1.0

        scaled_gradient.defvjp(lambda g, out, x: (g * k,))
        return scaled_gradient

    first, second = make(1.0), make(2.0)
    x = sd.vector("x", 2)
    gradients = sd.evaluate([sd.grad(sd.sum(first(x)), x), sd.grad(sd.sum(second(x)), x)], {x: [1.0, 1.0]})
    np.testing.assert_array_equal(gradients, [[1.0, 1.0], [2.0, 2.0]])


def test_rules_returning_none_or_non_expressions():
    half = sd.custom_op("test_none_rule", lambda x, y: x * 0 + y, elementwise=True,
                        vjp=(lambda g, out, x, y: None, lambda g, out, x, y: g))
    x, y = sd.vector("x", 2), sd.vector("y", 2)
    dx, dy = sd.evaluate(sd.grad(sd.sum(half(x, y)), [x, y]), {x: [1.0, 2.0], y: [3.0, 4.0]})
    np.testing.assert_array_equal(dx, [0.0, 0.0])
    np.testing.assert_array_equal(dy, [1.0, 1.0])
    bad = sd.custom_op("test_float_rule", np.sin, elementwise=True, vjp=lambda g, out, x: 1.0)
    with pytest.raises(CustomOpError, match="test_float_rule.*returned float"):
        sd.grad(sd.sum(bad(x)), x)


def test_check_op_uses_float32_tolerances_and_skips_derivatives_of_an_op_without_rules():
    sine = sd.custom_op("test_f32_sin", np.sin, elementwise=True, vjp=lambda g, out, x: g * sd.cos(x),
                        numba=math.sin, samples=lambda rng: [((rng.normal(size=3).astype(np.float32),), {})])
    check_op(sine)
    plain = sd.custom_op("test_plain_cos", np.cos, elementwise=True,
                         samples=lambda rng: [((rng.normal(size=3),), {})])
    check_op(plain, compiled=False)
