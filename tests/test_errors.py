"""Bad input gets a clear error that names the thing at fault: the op, the shapes,
the symbol, the types and, for mistakes made while building a graph, the user's
own file and line (this file's, here)."""

import inspect
import os

import numpy as np
import pytest

import symdiff as sd

THIS_FILE = os.path.abspath(__file__)


def _next_line() -> int:
    """The number of the caller's next line (where the failing call is written)."""
    return inspect.currentframe().f_back.f_lineno + 1


def _assert_mentions(message: str, *parts):
    for part in parts:
        assert str(part) in message, f"{part!r} not in {message!r}"


# ------------------------------------------------------------ build time


def test_broadcast_mismatch_names_op_shapes_and_the_users_line():
    x, y = sd.vector("x", 3), sd.matrix("y", (2, 4))
    with pytest.raises(sd.ShapeError) as info:
        line = _next_line()
        x + y
    _assert_mentions(str(info.value), "add", "(3,)", "(2, 4)", f"{THIS_FILE}:{line}")
    assert isinstance(info.value, ValueError)  # existing `except ValueError` clauses still work


@pytest.mark.parametrize(
    "build, op, shapes",
    [
        (lambda W, v: W @ v, "matmul", ["(2, 3)", "(4,)"]),
        (lambda W, v: sd.concatenate([W, v]), "concatenate", ["(2, 3)", "(4,)"]),
        (lambda W, v: sd.maximum(W, v), "maximum", ["(2, 3)", "(4,)"]),
        (lambda W, v: sd.where(W > 0, W, v), "where", ["(2, 3)", "(4,)"]),
        (lambda W, v: sd.reshape(v, (3, 2)), "reshape", ["(4,)", "(3, 2)"]),
        (lambda W, v: sd.broadcast_to(W, (4, 3)), "broadcast_to", ["(2, 3)", "(4, 3)"]),
        (lambda W, v: sd.squeeze(W, 0), "squeeze", ["(2, 3)"]),
    ],
    ids=["matmul", "concatenate", "maximum", "where", "reshape", "broadcast_to", "squeeze"],
)
def test_every_build_time_shape_error_names_op_shapes_and_line(build, op, shapes):
    W, v = sd.matrix("W", (2, 3)), sd.vector("v", 4)
    with pytest.raises(sd.ShapeError) as info:
        build(W, v)
    # The user's line is the lambda's line in the table above, inside this file.
    _assert_mentions(str(info.value), op, *shapes, f"{THIS_FILE}:{build.__code__.co_firstlineno}")


def test_shape_error_from_a_helper_function_points_at_the_users_line_not_symdiff():
    def model(x):
        return sd.tanh(x) @ sd.matrix("W", (5, 2))

    with pytest.raises(sd.ShapeError) as info:
        model(sd.vector("x", 3))
    line = model.__code__.co_firstlineno + 1
    _assert_mentions(str(info.value), f"{THIS_FILE}:{line}")
    assert "symdiff" + os.sep + "frontend" + os.sep not in str(info.value)


def test_bad_axes_and_shapes_raise_shape_errors():
    x = sd.matrix("x", (2, 3))
    with pytest.raises(sd.ShapeError, match="axis 2 is out of range for 2-d"):
        sd.sum(x, axis=2)
    with pytest.raises(sd.ShapeError, match="repeated axis"):
        sd.sum(x, axis=(0, -2))
    with pytest.raises(sd.ShapeError, match="bad dimension -1"):
        sd.tensor("t", (3, -1))
    with pytest.raises(sd.ShapeError, match="matrix 'm' needs a 2-d shape"):
        sd.matrix("m", (3,))


def test_bad_dtypes_and_names_are_refused_with_the_supported_list():
    with pytest.raises(sd.DTypeError, match="int8.*float64"):
        sd.vector("x", 3, dtype="int8")
    with pytest.raises(TypeError, match="ndarray of dtype complex128"):
        sd.constant(np.ones(2, dtype=complex))
    with pytest.raises(ValueError, match="Python identifiers.*'2x'"):
        sd.scalar("2x")
    with pytest.raises(sd.DTypeError, match="sub: bool inputs"):
        sd.vector("flags", 3, dtype="bool") - True


# ------------------------------------------------------ not an expression


@pytest.mark.parametrize("bad", ["abc", {"a": 1}, None, object()], ids=["str", "dict", "None", "object"])
def test_an_op_applied_to_a_non_expression_says_what_it_got(bad):
    x = sd.vector("x", 3)
    kind = type(bad).__name__
    for build, name in [(lambda: x + bad, "add"), (lambda: bad * x, "multiply"), (lambda: sd.exp(bad), "exp"),
                        (lambda: sd.maximum(x, bad), "maximum"), (lambda: x @ bad, "matmul")]:
        with pytest.raises(TypeError) as info:
            build()
        _assert_mentions(str(info.value), kind, "expected a symdiff expression")
        if name != "matmul":
            _assert_mentions(str(info.value), f"{name}:")
    with pytest.raises(TypeError, match=kind):
        sd.sum(bad)


def test_grad_and_evaluate_of_non_expressions_say_what_they_got():
    x = sd.vector("x", 3)
    with pytest.raises(TypeError, match="cost must be a symdiff expression, got str 'x'"):
        sd.grad("x", x)
    with pytest.raises(TypeError, match="got str 'x'"):
        sd.grad(sd.sum(x), "x")
    with pytest.raises(TypeError, match="got str 'sum'"):
        sd.evaluate("sum", {})
    with pytest.raises(TypeError, match="got float 3.0"):
        sd.evaluate(3.0, {})
    with pytest.raises(TypeError, match="got int 1"):
        sd.evaluate([sd.sum(x), 1], {x: np.ones(3)})


# ---------------------------------------------------------- evaluation


def test_missing_symbol_is_named_with_its_type():
    x, W = sd.vector("x", 3), sd.matrix("W", (None, 3), dtype="float32")
    with pytest.raises(sd.InputError) as info:
        sd.evaluate(W @ x.astype("float32"), {x: np.ones(3)})
    _assert_mentions(str(info.value), "missing value", "'W'", "f32[?,3]")
    with pytest.raises(sd.InputError, match="'x'"):
        sd.evaluate(sd.sum(x), {})
    with pytest.raises(sd.InputError, match="'x'"):
        sd.evaluate(sd.sum(x))


def test_value_of_wrong_shape_names_symbol_and_both_shapes():
    x = sd.matrix("x", (None, 3))
    for value, shape_text in [(np.ones((2, 4)), "(2, 4)"), (np.ones(3), "(3,)"), (1.0, "()")]:
        with pytest.raises(sd.ShapeError) as info:
            sd.evaluate(sd.sum(x), {x: value})
        _assert_mentions(str(info.value), "'x'", "f64[?,3]", shape_text)


def test_value_of_wrong_dtype_names_symbol_and_both_types():
    x32 = sd.vector("x32", 2, dtype="float32")
    with pytest.raises(sd.InputTypeError) as info:
        sd.evaluate(x32 * 2, {x32: np.ones(2)})  # float64 does not cast safely to float32
    _assert_mentions(str(info.value), "'x32'", "f32[2]", "float64", "astype")
    n = sd.vector("n", 2, dtype="int64")
    with pytest.raises(sd.InputTypeError) as info:
        sd.evaluate(n * 2, {n: np.array([0.5, 1.5])})
    _assert_mentions(str(info.value), "'n'", "i64[2]", "float64")
    with pytest.raises(sd.InputTypeError) as info:
        sd.evaluate(n * 2, {n: 1.5})
    _assert_mentions(str(info.value), "'n'", "i64[2]", "float64")
    x = sd.vector("x", 2)
    for bad, kind in [(np.ones(2, dtype=complex), "complex128"), ("ab", "str"), ({"a": 1}, "dict"), (None, "NoneType")]:
        with pytest.raises(sd.InputTypeError) as info:
            sd.evaluate(x * 2, {x: bad})
        _assert_mentions(str(info.value), "'x'", "f64[2]", kind)
    with pytest.raises(sd.InputTypeError, match="got the expression") as info:
        sd.evaluate(x * 2, {x: sd.vector("y", 2)})
    assert isinstance(info.value, TypeError)  # existing `except TypeError` clauses still work


def test_safe_casts_are_accepted():
    x = sd.vector("x", 2)
    assert sd.evaluate(x * 2, {x: np.array([1, 2], dtype=np.int32)}).dtype == np.float64
    assert sd.evaluate(x * 2, {"x": np.array([1, 2], dtype=np.float32)}).dtype == np.float64
    s32 = sd.scalar("s32", dtype="float32")
    assert sd.evaluate(s32 * 2, {s32: 1.5}).dtype == np.float32  # a Python float is weak
    assert sd.evaluate(s32 * 2, {s32: 3}).dtype == np.float32


def test_input_keys_must_be_symbols_or_names():
    x = sd.vector("x", 2)
    with pytest.raises(sd.InputError, match="only be given for symbols"):
        sd.evaluate(x * 2, {x * 2: np.ones(2)})
    with pytest.raises(sd.InputError, match="symbol names, got int 3"):
        sd.evaluate(x * 2, {3: np.ones(2)})


def test_two_symbols_with_one_name_are_reported():
    a, a32 = sd.scalar("a"), sd.scalar("a", dtype="float32")
    with pytest.raises(sd.InputError, match="two different symbols are named 'a'"):
        sd.evaluate(a + a32, {a: 1.0, a32: 1.0})


def test_run_time_size_mismatch_names_the_node_and_the_users_line():
    x, y = sd.vector("x"), sd.vector("y")
    line = _next_line()
    total = x * y
    with pytest.raises(sd.ShapeError) as info:
        sd.evaluate(total, {x: np.ones(3), y: np.ones(4)})
    _assert_mentions(str(info.value), "mul", f"{THIS_FILE}:{line}", "(3,)", "(4,)", "never broadcasts")


# ------------------------------------------------------------- gradients


def test_grad_of_a_non_scalar_cost_is_a_gradient_error():
    x = sd.vector("x", 3)
    line = _next_line()
    cost = sd.exp(x)
    with pytest.raises(sd.GradientError) as info:
        sd.grad(cost, x)
    _assert_mentions(str(info.value), "scalar cost", "(3,)", f"{THIS_FILE}:{line}", "sd.sum", "sd.vjp")


def test_grad_wrt_int_or_bool_nodes_is_a_gradient_error():
    x = sd.vector("x", 3)
    n = sd.vector("n", 3, dtype="int64")
    cost = sd.sum(x * n)
    with pytest.raises(sd.GradientError) as info:
        sd.grad(cost, n)
    _assert_mentions(str(info.value), "with respect to n of type i64[3]", "float")
    with pytest.raises(sd.GradientError, match="bool"):
        sd.grad(cost, [x, x > 0])
    with pytest.raises(sd.GradientError, match="float cost"):
        sd.grad(sd.sum(n), x)
    for fn in (lambda: sd.hvp(cost, n, n), lambda: sd.jvp(cost, n, n), lambda: sd.vjp(x * n, n, x)):
        with pytest.raises(sd.GradientError, match="i64"):
            fn()


def test_hvp_mode_and_pairing_errors():
    x, v = sd.vector("x", 3), sd.vector("v", 3)
    cost = sd.sum(x**3)
    with pytest.raises(ValueError, match="'rev-rev' or 'fwd-rev', got 'reverse'"):
        sd.hvp(cost, x, v, mode="reverse")
    with pytest.raises(sd.GradientError, match="2 wrt nodes but 1 vectors"):
        sd.hvp(cost, [x, v], [v])


def test_vjp_with_a_cotangent_of_the_wrong_type():
    x = sd.vector("x", 3)
    with pytest.raises(sd.GradientError, match="cotangent of type f64\\[4\\]"):
        sd.vjp(x * 2, x, sd.vector("u", 4))


# -------------------------------------------------------------- indexing


@pytest.mark.parametrize(
    "index, what",
    [
        (sd.scalar("i"), "float64 expression"),
        (1.5, "float"),
        (True, "bool"),
        ("0", "str"),
        (slice(sd.scalar("s", dtype="int64"), None), "static int"),
        (slice(0.5, None), "static int"),
    ],
    ids=["float_expr", "float", "bool", "str", "expr_bound", "float_bound"],
)
def test_unsupported_indices_are_a_clear_type_error(index, what):
    # Integer arrays, lists and int64 expressions are advanced indices (tests/test_indexing.py).
    x = sd.matrix("x", (3, 4))
    with pytest.raises(TypeError) as info:
        line = _next_line()
        x[index]
    _assert_mentions(str(info.value), what)
    if what != "static int":
        _assert_mentions(str(info.value), "x[...]", f"{THIS_FILE}:{line}")


def test_out_of_range_and_too_many_indices_are_index_errors():
    x = sd.matrix("x", (3, 4))
    with pytest.raises(IndexError, match="index 3 is out of bounds for axis 0 with size 3"):
        x[3]
    with pytest.raises(IndexError, match="index -5 is out of bounds for axis 1 with size 4"):
        x[0, -5]
    with pytest.raises(IndexError, match="too many indices: 3"):
        x[0, 0, 0]
    with pytest.raises(IndexError, match="single ellipsis"):
        x[..., 0, ...]
    with pytest.raises(sd.ShapeError, match="step cannot be zero"):
        x[::0]


def test_truth_value_and_iteration_errors():
    with pytest.raises(TypeError, match="no truth value.*sd.where"):
        bool(sd.scalar("a"))
    with pytest.raises(TypeError, match="cannot iterate"):
        iter(sd.scalar("a"))
    with pytest.raises(TypeError, match="first dimension is not static"):
        list(sd.vector("free"))
