"""Model files that would block, read without end or allocate without bound: refused quickly.

``load_model`` reads only regular files, at most ``max_bytes`` of them, and every
loader checks the sizes a header declares against the bytes present before it
allocates. Hostile inputs run in a fresh interpreter (``assert_prints_ok``) where
a regression would block or exhaust memory, so they fail instead of hanging.
"""

from __future__ import annotations

import os
import struct
import time
import tracemalloc

import numpy as np
import pytest

import nba
from nba.bandits import _ENCODER, LinUCB, OnlineBandit, _LinearState, _Saved
from nba.models import DEFAULT_MAX_BYTES, read_model_file
from tests.isolated import assert_prints_ok

vowpalwabbit = pytest.importorskip("vowpalwabbit")

from benchmarks.workloads import vw_examples, vw_model_file
from nba.models.vw import load_vw
from tests.models.vw_cases import rewrite, split_header, vw_scores

# --------------------------------------------------------------------------- files that are not model files


def _load_in_child(path: str, timeout: float = 20) -> None:
    assert_prints_ok(
        "import nba\n"
        "try:\n"
        f"    nba.load_model({path!r})\n"
        "except nba.ModelFormatError as e:\n"
        "    assert 'not a regular file' in str(e), e\n"
        "    print('ok')\n",
        timeout=timeout,
    )


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    _load_in_child(str(fifo))  # no writer: a blocking open or read would never return


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_character_devices_are_refused_without_reading(device):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    _load_in_child(device)


def test_a_directory_is_refused_naming_it(tmp_path):
    with pytest.raises(nba.ModelFormatError, match="not a regular file \\(a directory\\)"):
        nba.load_model(tmp_path)


def test_a_symlink_to_a_model_file_loads(tmp_path):
    target = vw_model_file("--cb_adf -b 10", n_train=20, seed=1)
    link = tmp_path / "model.vw"
    link.symlink_to(target)
    assert nba.load_model(link).info.bits == 10


def test_a_file_over_max_bytes_is_refused_naming_the_cap_and_how_to_raise_it(tmp_path):
    path = vw_model_file("--cb_adf -b 10", n_train=20, seed=1)
    size = path.stat().st_size
    with pytest.raises(nba.ModelFormatError, match=rf"{size} bytes, over the cap max_bytes={size - 1}.*max_bytes="):
        nba.load_model(path, max_bytes=size - 1)
    with pytest.raises(nba.ModelFormatError, match="max_bytes"):
        load_vw(path, max_bytes=size - 1)
    assert nba.load_model(path, max_bytes=size).info.bits == 10
    text = tmp_path / "model.txt"
    text.write_text("tree\n" + "x" * 100)
    with pytest.raises(nba.ModelFormatError, match="max_bytes=50"):
        nba.models.lightgbm.load_lightgbm(text, max_bytes=50)
    assert DEFAULT_MAX_BYTES == 1 << 30
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(nba.ConfigError, match="max_bytes"):
            nba.load_model(path, max_bytes=bad)


def test_a_file_that_grows_after_fstat_is_read_only_up_to_the_cap(tmp_path, monkeypatch):
    """The read is bounded by max_bytes, not by what fstat said (the file may grow meanwhile)."""
    path = tmp_path / "growing.bin"
    path.write_bytes(b"x" * 10_000)
    real_fstat = os.fstat

    class Small:
        def __init__(self, st):
            self.st_mode, self.st_size = st.st_mode, 10

    monkeypatch.setattr(os, "fstat", lambda fd: Small(real_fstat(fd)))
    reads = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    with pytest.raises(nba.ModelFormatError, match="more than 100 bytes"):
        read_model_file(path, max_bytes=100)
    assert sum(reads) <= 101 + 11
    data, _ = read_model_file(path, max_bytes=10_000)
    assert data == b"x" * 10_000


def test_missing_and_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(nba.ModelFormatError, match="cannot read model file.*missing"):
        nba.load_model(tmp_path / "missing.vw")


# --------------------------------------------------------------------------- declared sizes


def _bounded(fn, max_seconds: float = 1.0, max_mib: float = 64) -> None:
    """Run ``fn`` (which may raise) and check its time and its peak of traced allocations (numpy's included)."""
    tracemalloc.start()
    t = time.perf_counter()
    err: BaseException | None = None
    try:
        fn()
    except nba.NbaError as e:
        err = e
    dt = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert dt < max_seconds and peak < max_mib * 2**20, f"{dt:.2f} s, {peak / 2**20:.1f} MiB"
    if err is not None:
        raise err


@pytest.fixture(scope="module")
def small() -> bytes:
    return vw_model_file("--cb_explore_adf -b 10 -q UA", n_train=60, seed=3, n_actions=4).read_bytes()


def _tiny_b28_with_l1_l2(small: bytes) -> bytes:
    """The issue's file: a few hundred bytes declaring -b 28, with l1/l2 state and two weight records."""
    _, body = split_header(small)
    head = len(small) - len(body)
    state = bytearray(body[: 16 + 1 + 128])
    struct.pack_into("<dd", state, 17 + 112, 0.001, 0.5)
    return rewrite(small[:head] + bytes(state) + body[145 : 145 + 32], bits=28)


def test_a_tiny_vw_file_declaring_b28_with_l1_l2_state_loads_in_bounded_time_and_memory(small):
    data = _tiny_b28_with_l1_l2(small)
    assert len(data) < 400
    _bounded(lambda: load_vw(data))
    model = load_vw(data)
    assert model.storage == "sparse" and model.info.num_weights == 2 and model._core.table_bytes <= 1024
    shared, actions, _, _ = vw_examples(1, 2, n_actions=4)[0]
    assert np.isfinite(model.score(shared, model.prepare_actions(actions))).all()


@pytest.mark.parametrize("args", ["--cb_explore_adf -b 28 -q UA", "--cb_adf -b 28 --cb_type dr -q UA"])
def test_a_real_b28_model_that_learned_little_costs_what_its_file_holds(args):
    path = vw_model_file(args, n_train=400, seed=5)
    _bounded(lambda: nba.load_model(path), max_mib=16)
    model = nba.load_model(path)
    assert model.storage == "sparse" and model.info.bits == 28
    vw = vowpalwabbit.Workspace(f"-i {path} -t --quiet")
    try:
        for shared, actions, _, _ in vw_examples(40, 7):
            ours = model.score(shared, model.prepare_actions(actions))
            np.testing.assert_allclose(ours, vw_scores(vw, shared, actions, "text"), rtol=1e-5, atol=1e-5)
    finally:
        vw.finish()


def test_sparse_and_dense_weight_stores_score_identically(monkeypatch):
    """The two stores of one model give the same bits on many decisions (the forced choice is the only change)."""
    import nba.models.vw as vwmod

    path = vw_model_file("--cb_explore_adf -b 18 -q UA -q GA --cubic UGA", n_train=300, seed=1, fmt="json")
    dense = load_vw(path)
    monkeypatch.setattr(vwmod, "DENSE_BITS", 0)
    monkeypatch.setattr(vwmod, "DENSE_RATIO", 0)
    sparse = load_vw(path)
    assert (dense.storage, sparse.storage) == ("dense", "sparse")
    np.testing.assert_array_equal(dense.weights, sparse.weights)
    for shared, actions, _, _ in vw_examples(200, 17):
        np.testing.assert_array_equal(sparse.score(shared, sparse.prepare_actions(actions)),
                                      dense.score(shared, dense.prepare_actions(actions)))


@pytest.mark.parametrize(("n_arms", "needle"), [(60, "7.2 GiB of state"), (8, "ainv holds 0 bytes")])
def test_a_tiny_linucb_blob_declaring_huge_arrays_is_refused_before_allocating(n_arms, needle):
    """60 arms x 4000 features (7.2 GiB) is beyond any state nba keeps; 8 x 4000 (1 GiB) is not, but the blob
    does not hold the bytes it declares: both are refused before a byte is allocated."""
    blob = _ENCODER.encode(_Saved(format=1, state=_LinearState(
        kind="linucb", n_arms=n_arms, n_features=4000, ridge=1.0, param=1.0, draws=1,
        ainv=b"", b=b"", theta=b"", pulls=b"", version=0)))
    assert len(blob) < 400
    with pytest.raises(nba.ModelFormatError, match=needle):
        _bounded(lambda: OnlineBandit.from_bytes(blob), max_mib=1)
    model = LinUCB(3, 2)
    model.update(1, [1.0, 2.0], 0.5)
    assert OnlineBandit.from_bytes(model.to_bytes()).to_bytes() == model.to_bytes()
