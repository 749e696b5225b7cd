"""sd.distributed.Objective on a real 2-process LocalCluster: value, gradient and HVP against
the single-process function, partitionings (uneven, one block per worker, many), float32
data, a worker killed mid-evaluation, a block that cannot be recovered, and the docs.

One cluster serves the module (started with bounded waits, closed in teardown); the loss
graphs are few so that few kernels are compiled.
"""

import gc
import io
import os
import pathlib
import re
import warnings

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import symdiff as sd  # noqa: E402
from symdiff.distributed import (  # noqa: E402
    BlockLostError, LocalEvaluationWarning, NotARowSumError, Objective, plan_placement,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
D = 4  # features
RTOL = 1e-12


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = distributed.Client(cluster, timeout="60s")
    try:
        client.wait_for_workers(2, timeout=60)
        yield client
    finally:
        client.close(timeout=30)
        cluster.close(timeout=30)


def logistic(dtype="float64"):
    """Logistic regression with an intercept: a vector and a scalar parameter."""
    w, b = sd.vector("w", D), sd.scalar("b")
    X, y = sd.matrix("X", (None, D), dtype=dtype), sd.vector("y", dtype=dtype)
    z = X @ w + b
    return sd.sum(sd.softplus(z) - y * z), [w, b], X, y


def dataset(rows, dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, D)).astype(dtype)
    y = (rng.random(rows) < 0.5).astype(dtype)
    return X, y


P0 = [np.array([0.3, -0.2, 0.1, 0.5]), 0.25]
V0 = [np.array([1.0, -1.0, 0.5, 2.0]), -0.5]


def reference(loss, params, X, y, Xd, yd, mode_outputs):
    """The single-process compiled function and the NumPy reference evaluator on all rows."""
    (w, b), (vw, vb) = params, [sd.vector("w_direction", D), sd.scalar("b_direction")]
    outputs = {"value_and_grad": [loss, *sd.grad(loss, [w, b])], "hvp": sd.hvp(loss, [w, b], [vw, vb])}
    point = {w: P0[0], b: P0[1], vw: V0[0], vb: V0[1], X: Xd, y: yd}
    return {mode: sd.evaluate(outputs[mode], point) for mode in mode_outputs}


def close(got, want, rtol=RTOL):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1e-300)
    assert np.max(np.abs(got - want), initial=0.0) <= rtol * scale, (got, want)


def check_against_one_process(obj, loss, params, X, y, Xd, yd):
    value, (gw, gb) = obj.value_and_grad(P0)
    hw, hb = obj.hvp(P0, V0)
    ref = reference(loss, params, X, y, Xd, yd, ("value_and_grad", "hvp"))
    close(value, ref["value_and_grad"][0])
    close(np.append(gw, gb), np.append(*ref["value_and_grad"][1:]))
    close(np.append(hw, hb), np.append(*ref["hvp"]))
    # the client's compiled kernel on all rows in one call: the single-process function
    compiled, _ = obj._functions["value_and_grad"]
    one = compiled(P0[0], P0[1], np.ascontiguousarray(Xd), np.ascontiguousarray(yd))
    close(value, one[0])
    close(np.append(gw, gb), np.append(one[1], one[2]))
    compiled, _ = obj._functions["hvp"]
    one = compiled(P0[0], P0[1], V0[0], V0[1], np.ascontiguousarray(Xd), np.ascontiguousarray(yd))
    close(np.append(hw, hb), np.append(one[0], one[1]))
    return value, np.append(gw, gb), np.append(hw, hb)


@pytest.mark.parametrize("layout", ["uneven dask chunks", "one block per worker", "many numpy blocks",
                                    "one numpy array"])
def test_value_grad_hvp_match_one_process(client, layout):
    loss, params, X, y = logistic()
    Xd, yd = dataset(1003)
    if layout == "uneven dask chunks":
        chunks = (100, 250, 3, 400, 250)
        data = {X: da.from_array(Xd, chunks=(chunks, D)), y: da.from_array(yd, chunks=(chunks,))}
    elif layout == "one block per worker":
        data = {X: da.from_array(Xd, chunks=(502, D)), y: da.from_array(yd, chunks=502)}
    elif layout == "one numpy array":  # split into one block per worker
        data = {X: Xd, y: yd}
    else:
        edges = [0, 1, 77, 300, 301, 650, 900, 1003]
        data = {"X": [Xd[a:b] for a, b in zip(edges, edges[1:])], "y": [yd[a:b] for a, b in zip(edges, edges[1:])]}
    with Objective(loss, params, data, client=client, local_below=0) as obj:
        assert not obj.local and obj.rows == 1003
        assert len(obj._placement) == 2  # both workers hold blocks
        obj.value_and_grad(P0)
        # the workers loaded the kernel the client compiled (from the shared cache) or kept it in memory
        assert set(obj.last_evaluation["cache"].values()) <= {"hit", "memory"}, obj.last_evaluation["cache"]
        check_against_one_process(obj, loss, params, X, y, Xd, yd)
        assert obj.last_evaluation["where"] == "cluster" and obj.last_evaluation["rounds"] == 1
        # the HVP too: workers lower it in the client's node order, whatever graphs they rebuilt before
        assert set(obj.last_evaluation["cache"].values()) <= {"hit", "memory"}, obj.last_evaluation["cache"]


def test_float32_data(client):
    loss, params, X, y = logistic("float32")
    Xd, yd = dataset(700, "float32", seed=1)
    data = {X: da.from_array(Xd, chunks=(150, D)), y: da.from_array(yd, chunks=150)}
    with Objective(loss, params, data, client=client, local_below=0) as obj:
        assert obj.nbytes == 700 * (D + 1) * 4
        check_against_one_process(obj, loss, params, X, y, Xd, yd)


def test_reproducible_bits_mean_and_flat_api(client):
    loss, params, X, y = logistic()
    Xd, yd = dataset(900, seed=2)
    blocks = {X: [Xd[:400], Xd[400:]], y: [yd[:400], yd[400:]]}
    out = io.StringIO()
    with Objective(loss, params, blocks, client=client, local_below=0, reduce="mean", progress=out) as obj:
        first = obj.value_and_grad(P0)
        assert re.search(r"eval +1 value_and_grad +900 rows in 2 blocks on 2 workers: .* ms .*f = ", out.getvalue())
        again = obj.value_and_grad(P0)
        assert first[0] == again[0] and all(np.array_equal(a, b) for a, b in zip(first[1], again[1]))
        with pytest.warns(LocalEvaluationWarning):
            here = Objective(loss, params, blocks, reduce="mean")  # same partitioning, in this process
        assert here.local and here.client is None
        local = here.value_and_grad(P0)
        assert local[0] == first[0] and all(np.array_equal(a, b) for a, b in zip(local[1], first[1]))
        ref = reference(loss, params, X, y, Xd, yd, ("value_and_grad",))["value_and_grad"]
        close(first[0], ref[0] / 900)
        assert obj.value(P0) == first[0]
        x0 = obj.flatten(P0)
        f, g = obj.fun(x0)
        assert f == first[0] and np.array_equal(g, np.append(*first[1]))
        np.testing.assert_array_equal(obj.hessp(x0, obj.flatten(V0)), np.append(*obj.hvp(P0, V0)))
        # scipy's Newton-CG with hessp reaches the optimum of the same loss in one process
        from scipy.optimize import minimize

        result = minimize(obj.fun, x0, jac=True, hessp=obj.hessp, method="trust-ncg", options={"gtol": 1e-10})
        direct = minimize(here.fun, x0, jac=True, hessp=here.hessp, method="trust-ncg", options={"gtol": 1e-10})
        assert result.success and np.array_equal(result.x, direct.x)
        w_fit, b_fit = obj.unflatten(result.x)
        assert w_fit.shape == (D,) and np.ndim(b_fit) == 0
        here.close()


def test_blocks_run_in_cache_sized_slices(client):
    """A block longer than a slice is evaluated slice by slice, on the workers and in this
    process alike: the numbers of one call over all rows, and the same bits on both paths."""
    from symdiff.distributed import worker

    loss, params, X, y = logistic()
    Xd, yd = dataset(1003, seed=3)
    blocks = {X: [Xd[:700], Xd[700:]], y: [yd[:700], yd[700:]]}
    with Objective(loss, params, blocks, client=client, local_below=0, slice_bytes=1) as obj:  # 256-row slices
        check_against_one_process(obj, loss, params, X, y, Xd, yd)
        on_cluster = obj.value_and_grad(P0)
    with pytest.warns(LocalEvaluationWarning), Objective(loss, params, blocks, slice_bytes=1) as here:
        here_result = here.value_and_grad(P0)
    assert here_result[0] == on_cluster[0]
    assert all(np.array_equal(a, b) for a, b in zip(here_result[1], on_cluster[1]))
    calls = []
    worker.run_block(lambda *args: calls.append(args[2].shape[0]) or 1.0, P0, (Xd[:700], yd[:700]), 1)
    assert calls == [256, 256, 188]
    calls.clear()
    worker.run_block(lambda *args: calls.append(args[2].shape[0]) or 1.0, P0, (Xd[:700], yd[:700]), 0)
    assert calls == [700]


def test_slices_only_when_work_on_the_parameters_alone_is_small():
    """Work that depends on the parameters only runs again in every slice: a factorisation of a
    parameter matrix keeps whole blocks, the logistic loss's weights do not."""
    from symdiff.distributed import worker
    from symdiff.distributed.objective import slice_size

    loss, params, X, y = logistic()
    assert slice_size(sd.grad(loss, params) + [loss], [X, y], None) == worker.SLICE_BYTES
    A, rows = sd.matrix("A", (100, 100)), sd.matrix("rows", (None, 100))
    heavy = sd.sum((rows @ sd.linalg.expm(A)) ** 2)
    assert slice_size([heavy, *sd.grad(heavy, [A])], [rows], None) == 0
    assert slice_size([heavy], [rows], 4096) == 4096  # asked for: as asked
    with pytest.raises(ValueError, match="slice_bytes"):
        Objective(loss, params, {X: [np.zeros((2, D))], y: [np.zeros(2)]}, slice_bytes=-1)


def test_workers_sharing_one_process_keep_their_own_blocks():
    """A LocalCluster(processes=False): both workers live in this process and share the worker
    module; each keeps its own share of the blocks (one round per evaluation, no retries)."""
    loss, params, X, y = logistic()
    Xd, yd = dataset(400, seed=4)
    blocks = {X: [Xd[k::4] for k in range(4)], y: [yd[k::4] for k in range(4)]}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as threaded:
        with Objective(loss, params, blocks, client=threaded, local_below=0, retries=0) as obj:
            for _ in range(3):
                obj.value(P0)
                assert obj.last_evaluation["rounds"] == 1 and obj.last_evaluation["recovered"] == 0


def test_read_only_blocks_are_made_writeable_once():
    loss, params, X, y = logistic()
    Xd, yd = dataset(50, seed=5)
    Xd.setflags(write=False)
    with pytest.warns(LocalEvaluationWarning), Objective(loss, params, {X: [Xd], y: [yd]}) as obj:
        assert all(array.flags.writeable for array in obj._blocks[0])
        value, _ = obj.value_and_grad(P0)
    assert not Xd.flags.writeable  # the caller's array is left as it was
    close(value, reference(loss, params, X, y, Xd, yd, ("value_and_grad",))["value_and_grad"][0])


def test_an_error_in_a_block_names_the_block(client):
    w, X = sd.vector("w", D), sd.matrix("X", (None, None))
    loss = sd.sum((X @ w) ** 2)
    blocks = {X: [np.ones((3, D)), np.ones((2, D + 1))]}
    with Objective(loss, w, blocks, client=client, local_below=0, check_rows=False) as obj:
        with pytest.raises(sd.ShapeError, match=r"block 1 \(rows 3:5 of X\) on worker"):
            obj.value(np.ones(D))


def test_keep_freed_memory_raises_the_trim_threshold_only_while_kernels_run(monkeypatch):
    from symdiff.distributed import worker

    class FakeLibc:
        def __init__(self):
            self.calls = []

        def mallopt(self, parameter, value):
            self.calls.append(("mallopt", parameter, value))

        def malloc_trim(self, pad):
            self.calls.append(("malloc_trim", pad))

    libc = FakeLibc()
    monkeypatch.setattr(worker, "_glibc", lambda: libc)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with worker.keep_freed_memory():
        pass
    assert libc.calls == []  # the worker's malloc is left as it is
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # what Dask's nanny sets
    with worker.keep_freed_memory():
        with worker.keep_freed_memory():  # two objectives on one worker: restored after the last
            pass
        assert libc.calls == [("mallopt", -1, 2**30)]
    assert libc.calls == [("mallopt", -1, 2**30), ("mallopt", -1, 65536), ("malloc_trim", 0)]


def test_example_fits_close_to_the_truth(client):
    import importlib.util

    spec = importlib.util.spec_from_file_location("distributed_logreg", ROOT / "examples" / "distributed_logreg.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    # 4 features: the tests' logistic loss, so its kernels are reused, not compiled again
    result, fitted, true = example.main(["--rows", "40000", "--features", str(D), "--blocks", "6"], client=client)
    assert result.success
    assert np.max(np.abs(fitted - true)) < 0.1


def _kill_after_first_block(dask_worker=None):
    """Installed on one worker: its next evaluation dies after one block (os._exit, like a crash)."""
    from symdiff.distributed import worker

    original = worker._run_blocks

    def dying(function, head, blocks, slice_bytes):
        original(function, head, blocks[:1], slice_bytes)
        os._exit(1)

    worker._run_blocks = dying
    return True


def test_worker_killed_mid_evaluation(client):
    """Blocks lost with a worker come back: Dask recomputes a Dask array's blocks from its graph, and
    the client scatters NumPy blocks again from the arrays it was given; the results keep their bits."""
    loss, params, X, y = logistic()
    Xd, yd = dataset(1200, seed=3)
    from_dask = Objective(loss, params, {X: da.from_array(Xd, chunks=(150, D)), y: da.from_array(yd, chunks=150)},
                          client=client, local_below=0, recovery_timeout=30)
    from_numpy = Objective(loss, params, {X: np.array_split(Xd, 8), y: np.array_split(yd, 8)}, client=client,
                           local_below=0, recovery_timeout=30)
    with from_dask, from_numpy:
        before = [from_dask.value_and_grad(P0), from_numpy.value_and_grad(P0)]
        assert before[0][0] == before[1][0]  # the same partitioning: the same bits
        victim = sorted(from_numpy._placement)[0]
        assert victim in from_dask._placement
        client.run(_kill_after_first_block, workers=[victim])
        after = [from_numpy.value_and_grad(P0), from_dask.value_and_grad(P0)][::-1]  # it dies in the first
        for obj, got, want in zip([from_dask, from_numpy], after, before):
            assert obj.last_evaluation["recovered"] >= 1 and victim not in obj._placement
            assert got[0] == want[0] and all(np.array_equal(a, b) for a, b in zip(got[1], want[1]))
        # the nanny restarts the dead worker; the next evaluations notice it and give it blocks again
        client.wait_for_workers(2, timeout=60)
        for obj, want in zip([from_dask, from_numpy], before):
            obj.value_and_grad(P0)
            again = obj.value_and_grad(P0)
            assert len(obj._placement) == 2
            assert again[0] == want[0] and all(np.array_equal(a, b) for a, b in zip(again[1], want[1]))


def _load_block(path):
    return np.load(path)


def test_block_that_cannot_be_recovered_is_named(client, tmp_path):
    loss, params, X, y = logistic()
    Xd, yd = dataset(400, seed=4)
    parts = []
    for k in range(4):  # each block read from a file, which is then deleted
        path = tmp_path / f"rows{k}.npy"
        np.save(path, np.column_stack([Xd[100 * k:100 * (k + 1)], yd[100 * k:100 * (k + 1)]]))
        parts.append(da.from_delayed(dask.delayed(_load_block)(str(path)), shape=(100, D + 1), dtype=np.float64))
    table = da.concatenate(parts)
    with Objective(loss, params, {X: table[:, :D], y: table[:, D]}, client=client, local_below=0,
                   recovery_timeout=30, check_rows=False) as obj:
        obj.value_and_grad(P0)
        for k in range(4):
            os.remove(tmp_path / f"rows{k}.npy")
        victim = sorted(obj._placement)[0]
        lost = sorted(i for i, _ in obj._placement[victim])
        client.run(_kill_after_first_block, workers=[victim])
        with pytest.raises(BlockLostError, match=r"block (\d+) \(rows \d+:\d+ of X, y\)") as info:
            obj.value_and_grad(P0)
        assert int(re.search(r"block (\d+)", str(info.value)).group(1)) in lost
        assert "No such file" in str(info.value) or "FileNotFoundError" in str(info.value)


def test_owned_cluster_is_closed():
    loss, params, X, y = logistic()
    Xd, yd = dataset(300, seed=5)
    obj = Objective(loss, params, {X: [Xd[:100], Xd[100:]], y: [yd[:100], yd[100:]]}, n_workers=1, local_below=0)
    cluster = obj._resources.cluster
    assert obj._resources.owned and len(obj._workers()) == 1 and cluster.status.name == "running"
    value, _ = obj.value_and_grad(P0)  # (also lets the worker finish loading the kernel before it is closed)
    close(value, reference(loss, params, X, y, Xd, yd, ("value_and_grad",))["value_and_grad"][0])
    del obj  # the finalizer closes the cluster it started
    gc.collect()
    assert cluster.status.name == "closed"


def test_checks_and_errors():
    loss, params, X, y = logistic()
    Xd, yd = dataset(10)
    blocks = {X: [Xd], y: [yd]}
    with pytest.raises(sd.ShapeError, match="needs a None leading dimension"):
        Objective(sd.sum(sd.matrix("Z", (10, D)) @ params[0]), params[0], {"Z": [Xd]})
    with pytest.raises(sd.InputError, match="neither parameters nor data: y"):
        Objective(loss, params, {X: [Xd]})
    with pytest.raises(sd.DTypeError, match="does not cast safely"):
        Objective(*logistic("float32")[:2], {"X": [Xd.astype(np.float32)], "y": [yd]})
    with pytest.raises(sd.ShapeError, match=r"block 0 has different numbers of rows \(X: 10, y: 9\)"):
        Objective(loss, params, {X: [Xd], y: [yd[:9]]})
    with pytest.raises(sd.ShapeError, match="the same, nonzero number of blocks"):
        Objective(loss, params, {X: [Xd[:5], Xd[5:]], y: [yd]})
    with pytest.raises(ValueError, match="reduce must be"):
        Objective(loss, params, blocks, reduce="max")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LocalEvaluationWarning)
        per_row_mean = Objective(sd.mean(sd.softplus(X @ params[0]) - y), params, blocks)
        with pytest.raises(NotARowSumError, match="not a sum over rows"):
            per_row_mean.value(P0)
        penalized = Objective(loss + 0.5 * sd.sum(params[0] ** 2), params, blocks)
        with pytest.raises(NotARowSumError, match="penalty"):
            penalized.value_and_grad(P0)  # at w = 0 too: the check perturbs the parameters
        obj = Objective(loss, params, blocks)
        with pytest.raises(sd.InputError, match="list of 2 values"):
            obj.value(np.zeros(D + 1))
        with pytest.raises(sd.ShapeError, match="flat vector of 5 values"):
            obj.fun(np.zeros(4))
        assert np.isclose(obj.value({"w": P0[0], "b": P0[1]}), obj.value(P0))
        obj.close()
        with pytest.raises(RuntimeError, match="closed"):
            obj.value(P0)


def test_missing_dask_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    loss, params, X, y = logistic()
    with pytest.raises(ImportError, match=re.escape('pip install "symdiff[distributed]"')):
        Objective(loss, params, {X: [np.zeros((2, D))], y: [np.zeros(2)]})


def test_plan_placement_balances_and_keeps_blocks_in_place():
    rows = [100] * 8
    all_on_a = [["a"]] * 8
    target = plan_placement(rows, all_on_a, ["a", "b"])
    assert target.count("a") == 4 and target.count("b") == 4
    spread = [["a"], ["b"]] * 4
    assert plan_placement(rows, spread, ["a", "b"]) == ["a", "b"] * 4  # nothing moves
    uneven = plan_placement([400, 100, 100, 100, 100], [["a"]] * 5, ["a", "b"])
    assert sum(r for r, w in zip([400, 100, 100, 100, 100], uneven) if w == "a") == 400
    lost = plan_placement([100, 100], [["gone"], ["b"]], ["a", "b"])
    assert lost == ["a", "b"]


def test_docs_code_blocks_run():
    """Every python block of docs/distributed.md, in order (they start and close their own small cluster)."""
    page = ROOT / "docs" / "distributed.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert blocks
    namespace = {"__name__": "__main__"}
    for number, block in enumerate(blocks):
        try:
            exec(compile(block, f"docs/distributed.md block {number}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"docs/distributed.md block {number} failed: {exc!r}\n{block}")
