"""Hostile and unsupported VW model files: only ModelFormatError comes out.

A file that loads must score finite costs. Mutations behind a recomputed header
checksum reach the option parser and the weight reader; the checksum helper is
itself checked against VW (VW loads a header this file rewrote).
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nba
from benchmarks.workloads import vw_examples, vw_model_file, vw_text
from nba.models.vw import MAX_BITS, load_vw
from tests.models.vw_cases import join_header, rewrite, split_header

vowpalwabbit = pytest.importorskip("vowpalwabbit")

DECISIONS = vw_examples(3, 21, n_actions=4)


# --------------------------------------------------------------------------- header surgery


def with_options(data: bytes, options: str) -> bytes:
    return rewrite(data, options=(" " + options).encode() + b"\x00")


@pytest.fixture(scope="module")
def small() -> bytes:
    """A small save_resume cb_explore_adf model: b=10, a few hundred weight records."""
    return vw_model_file("--cb_explore_adf -b 10 -q UA", n_train=60, seed=3, n_actions=4).read_bytes()


@pytest.fixture(scope="module")
def small_predict_only() -> bytes:
    return vw_model_file("--cb_adf -b 10 -q UA --predict_only_model", n_train=60, seed=3, n_actions=4).read_bytes()


def loads_and_scores_finite(data: bytes) -> bool:
    """True when ``data`` loads and scores finite costs; False when refused with ModelFormatError."""
    try:
        model = load_vw(data)
    except nba.ModelFormatError as e:
        assert str(e)
        return False
    for shared, actions, _, _ in DECISIONS:
        costs = model.score(shared, model.prepare_actions(actions))
        assert np.isfinite(costs).all(), f"a loaded model scored {costs}"
    return True


def test_rejoining_a_header_is_byte_identical(small, small_predict_only):
    for data in (small, small_predict_only):
        assert join_header(*split_header(data)) == data


def test_vw_accepts_a_header_this_file_rewrote(small, tmp_path):
    """Our checksum is VW's: VW loads a model whose options we reordered and predicts the same."""
    f, _ = split_header(small)
    tokens = f["options"].rstrip(b"\x00").decode().split(" --")
    reordered = " --".join([tokens[0]] + list(reversed(tokens[1:])))
    assert reordered != f["options"].rstrip(b"\x00").decode()
    path = tmp_path / "rewritten.vw"
    path.write_bytes(rewrite(small, options=reordered.encode() + b"\x00"))
    orig = tmp_path / "orig.vw"
    orig.write_bytes(small)
    a = vowpalwabbit.Workspace(f"-i {orig} -t --quiet")
    b = vowpalwabbit.Workspace(f"-i {path} -t --quiet")
    try:
        shared, actions, _, _ = DECISIONS[0]
        assert a.predict(vw_text(shared, actions)) == b.predict(vw_text(shared, actions))
    finally:
        a.finish()
        b.finish()
    assert loads_and_scores_finite(path.read_bytes())


# --------------------------------------------------------------------------- truncation and mutation


def test_every_truncation_is_refused_or_loads_finite(small, small_predict_only):
    for data in (small, small_predict_only):
        loaded = [n for n in range(len(data)) if loads_and_scores_finite(data[:n])]
        header_end = len(data) - len(split_header(data)[1])
        # Only cuts at a weight-record boundary load (as in VW: fewer weights).
        assert loaded and min(loaded) > header_end


def test_random_byte_mutations_are_refused_or_load_finite(small, small_predict_only):
    rng = np.random.default_rng(1234)
    outcomes = {True: 0, False: 0}
    for data in (small, small_predict_only):
        for _ in range(600):
            buf = bytearray(data)
            op = rng.integers(4)
            for _ in range(int(rng.integers(1, 4))):
                pos = int(rng.integers(len(buf)))
                if op == 0:
                    buf[pos] ^= 1 << int(rng.integers(8))
                elif op == 1:
                    buf[pos] = int(rng.integers(256))
                elif op == 2:
                    del buf[pos]
                else:
                    buf.insert(pos, int(rng.integers(256)))
            outcomes[loads_and_scores_finite(bytes(buf))] += 1
    assert outcomes[True] and outcomes[False], outcomes  # both paths exercised


_option_tokens = st.sampled_from([
    "--cb_adf", "--cb_explore_adf", "--quadratic UA", "--cubic UAG", "--interactions UAG", "--interactions UA",
    "--ignore U", "--ignore_linear A", "--keep UA", "--noconstant", "--hash all", "--hash_seed 9", "--chain_hash",
    "--epsilon 0.3", "--softmax", "--squarecb", "--first 2", "--sgd", "--adaptive", "--normalized",
    "--csoaa_ldf multiline", "--csoaa_rank", "--cb_type dr", "--cb_type ips", "--bit_precision 10",
    "--quadratic", "--ignore", "--lrq UA2", "--bag 2", "--link identity", "-q", "x", "--",
])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tokens=st.lists(_option_tokens, max_size=8), bits=st.one_of(st.just(10), st.integers(0, 40)),
       which=st.booleans())
def test_mutated_options_behind_a_valid_checksum_are_refused_or_load_finite(small, small_predict_only, tokens,
                                                                            bits, which):
    data = with_options(small if which else small_predict_only, " ".join(tokens))
    loads_and_scores_finite(rewrite(data, bits=bits))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(version=st.binary(max_size=14), model_id=st.binary(max_size=20), lda=st.integers(0, 2**32 - 1),
       ngram=st.lists(st.binary(min_size=3, max_size=3), max_size=2), options=st.binary(max_size=40))
def test_hostile_header_fields_are_refused_or_load_finite(small, version, model_id, lda, ngram, options):
    loads_and_scores_finite(rewrite(small, version=version, id=model_id, lda=lda, ngram=ngram, options=options))


# --------------------------------------------------------------------------- unsupported options, named


_UNSUPPORTED_TRAINED = [
    ("--cb_adf --lrq UA2", "--lrq"),
    ("--cb_adf --lrqfa UA2", "--lrqfa"),
    ("--cb_adf --nn 2", "--nn"),
    ("--cb_explore_adf --bag 3", "--bag"),
    ("--cb_explore_adf --cover 3", "--cover"),
    ("--cb_explore_adf --regcb", "--regcb"),
    ("--cb_explore_adf --regcbopt", "--regcbopt"),
    ("--cb_explore_adf --rnd 2", "--rnd"),
    ("--cb_explore_adf --synthcover", "--synthcover"),
    ("--cb_explore_adf --squarecb --elim", "--elim"),
    ("--cb_explore_adf --large_action_space", "--large_action_space"),
    ("--cb_adf --ftrl", "--ftrl"),
    ("--cb_adf --pistol", "--pistol"),
    ("--cb_adf --coin", "--coin"),
    ("--cb_adf --boosting 2", "--boosting"),
    ("--cb_adf --marginal U", "--marginal"),
    ("--cb_adf --autolink 2", "--autolink"),
    ("--cb_adf --stage_poly", "--stage_poly"),
    ("--cb_adf --link logistic", "--link logistic"),
    ("--cb_adf --interactions ::", "':' wildcard"),
    ("--cb_adf -q :A", "':' wildcard"),
    ("--cb_adf --cubic :UA", "':' wildcard"),
    ("--cb_adf --interactions UAGA", "more than three namespaces"),
    ("--cb_adf --experimental_full_name_interactions User|Action", "--experimental_full_name_interactions"),
    ("--cb_adf --ngram U2", "--ngram"),
    ("--cb_adf --affix +2U", "--affix"),
    ("--cb_adf --spelling U", "--spelling"),
    ("--cb_adf --redefine V:=U", "--redefine"),
]


@pytest.mark.parametrize(("args", "named"), _UNSUPPORTED_TRAINED, ids=[a for a, _ in _UNSUPPORTED_TRAINED])
def test_models_with_unsupported_options_are_refused_naming_the_option(args, named):
    path = vw_model_file(args, n_train=20, seed=1, n_actions=3)
    with pytest.raises(nba.ModelFormatError, match=None) as info:
        nba.load_model(path)
    assert named in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ("", "not a contextual-bandit ADF model"),
        ("--oaa 3", "--oaa"),
        ("--cb 3 --cb_force_legacy", "--cb, --cb_force_legacy"),
        ("--ccb_explore_adf --cb_sample", "--ccb_explore_adf"),
        ("--cb_adf --bfgs", "--bfgs"),
        ("--cb_adf --link poisson", "--link poisson"),
        ("--cb_adf --csoaa_ldf mc", "--csoaa_ldf mc"),
        ("--cb_adf --cb_type weird", "--cb_type weird"),
        ("--cb_adf --hash weird", "--hash weird"),
        ("--cb_adf --interactions A", "at least two namespaces"),
        ("--cb_adf --quadratic UAB", "must name 2 namespaces"),
        ("--cb_adf --cubic UA", "must name 3 namespaces"),
        ("--cb_adf --ignore \\x20", "escaped"),
        ("--cb_adf --bit_precision 12", "--bit_precision"),
        ("--cb_adf --hash_seed x", "--hash_seed"),
        ("--cb_explore_adf --softmax --squarecb", "conflicting exploration"),
        ("--cb_adf --quadratic", "--quadratic has no value"),
        ("cb_adf", "unexpected token"),
    ],
)
def test_rewritten_options_nba_cannot_score_are_refused_naming_them(small, options, named):
    with pytest.raises(nba.ModelFormatError) as info:
        load_vw(with_options(small, options))
    assert named in str(info.value)


def test_header_fields_nba_does_not_reproduce_are_refused(small):
    with pytest.raises(nba.ModelFormatError, match="--lda"):
        load_vw(rewrite(small, lda=2))
    with pytest.raises(nba.ModelFormatError, match="--ngram"):
        load_vw(rewrite(small, ngram=[b"U2\x00"]))
    with pytest.raises(nba.ModelFormatError, match="--skips"):
        load_vw(rewrite(small, skips=[b"U1\x00"]))


# --------------------------------------------------------------------------- hostile specifics


def _weight_records(data: bytes, per_weight: int) -> tuple[int, int]:
    """(offset of the first weight record, record size) in a small save_resume model."""
    _, body = split_header(data)
    start = len(data) - len(body) + 16 + 1 + (128 if per_weight > 1 else 0)  # epsilon-greedy saves no counter
    return start, 4 * (1 + per_weight)


def test_hostile_weights_are_refused(small):
    start, rec = _weight_records(small, 3)
    assert (len(small) - start) % rec == 0
    (first,) = struct.unpack_from("<I", small, start)

    def patched(offset: int, fmt: str, value) -> bytes:
        buf = bytearray(small)
        struct.pack_into(fmt, buf, offset, value)
        return bytes(buf)

    for value, needle in ((math.nan, "diverged"), (math.inf, "diverged"), (-1e35, "diverged")):
        with pytest.raises(nba.ModelFormatError, match=needle):
            load_vw(patched(start + 4, "<f", value))
    with pytest.raises(nba.ModelFormatError, match="beyond the 1024 weights"):
        load_vw(patched(start, "<I", 1 << 10))
    with pytest.raises(nba.ModelFormatError, match="beyond"):
        load_vw(patched(start, "<I", 2**32 - 1))
    with pytest.raises(nba.ModelFormatError, match="repeats index"):
        load_vw(patched(start + rec, "<I", first))
    with pytest.raises(nba.ModelFormatError, match="truncated weights"):
        load_vw(small[:-1])


def test_hostile_learner_state_is_refused(small):
    _, body = split_header(small)
    resume = len(small) - len(body) + 16
    assert small[resume] == 1
    for flag in (2, 255):
        with pytest.raises(nba.ModelFormatError, match="save_resume flag"):
            load_vw(small[:resume] + bytes([flag]) + small[resume + 1 :])
    for offset, value in ((112, math.nan), (112, -1.0), (120, 0.0), (120, math.inf), (120, -2.0)):
        buf = bytearray(small)
        struct.pack_into("<d", buf, resume + 1 + offset, value)
        with pytest.raises(nba.ModelFormatError, match="regularization state"):
            load_vw(bytes(buf))


def test_hostile_sizes_never_allocate(small):
    for bits in (MAX_BITS + 1, 31, 32):
        with pytest.raises(nba.ModelFormatError, match=f"-b {bits}"):
            load_vw(rewrite(small, bits=bits))
    for bits in (0, 33, 2**32 - 1):
        with pytest.raises(nba.ModelFormatError, match="out of range"):
            load_vw(rewrite(small, bits=bits))
    f, body = split_header(small)
    head_len = len(small) - len(body)
    huge = bytearray(small)
    opt_len_at = head_len - 8 - len(f["options"]) - 4
    struct.pack_into("<I", huge, opt_len_at, 2**32 - 1)
    with pytest.raises(nba.ModelFormatError, match="options length"):
        load_vw(bytes(huge))
    with pytest.raises(nba.ModelFormatError, match="checksum"):
        load_vw(small[:20] + bytes([small[20] ^ 1]) + small[21:])


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "truncated"),
        (b"\x07\x00\x00\x00", "truncated"),
        (b"\x07\x00\x00\x008.11.0\x00" + b"\x00" * 64, "older than 9.0.0"),
        (b"\x07\x00\x00\x00abcdef\x00" + b"\x00" * 64, "not a Vowpal Wabbit binary model"),
        (b"\xff\xff\xff\xff" + b"\x00" * 64, "version string length"),
        (b"tree\nversion=v4\n", "version string length"),
        (bytes(range(256)) * 4, "version string length"),
    ],
)
def test_garbage_is_refused(data, needle):
    with pytest.raises(nba.ModelFormatError, match=needle):
        load_vw(data)


def test_a_mutated_version_is_refused(small):
    with pytest.raises(nba.ModelFormatError, match="older than 9.0.0"):
        load_vw(rewrite(small, version=b"8.9.1\x00"))
    assert loads_and_scores_finite(rewrite(small, version=b"9.0.0\x00"))


def test_load_model_refuses_what_it_cannot_sniff(tmp_path):
    path = tmp_path / "junk.vw"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(nba.ModelFormatError):
        nba.load_model(path)
    with pytest.raises(nba.ModelFormatError, match="not a Vowpal Wabbit"):
        nba.load_model(path, format="vw")
    with pytest.raises(nba.ModelFormatError, match="cannot read"):
        load_vw(tmp_path / "missing.vw")


# --------------------------------------------------------------------------- isolated fuzzing (crashes, hangs, memory)

FUZZ_TIMEOUT_S = 10.0  # per mutant; loading and scoring one takes milliseconds
FUZZ_ADDRESS_LIMIT = 1 << 30  # the worker needs ~150 MB: a mutant allocating ~1 GiB is a MemoryError verdict
_FUZZ_BASES = [
    ("--cb_explore_adf -b 10 -q UA", {}),  # save_resume, epsilon
    ("--cb_adf -b 10 -q UA --predict_only_model", {}),  # weights only
    ("--cb_adf -b 12 --cb_type dr -q UA --l1 1e-6 --l2 1e-6", {}),  # l1/l2 state, two weight vectors
    ("--cb_explore_adf --squarecb -b 12 -q UA --cubic UUA --sgd", {}),  # counter, one float per weight
]
_TOKENS = [
    "--cb_adf", "--cb_explore_adf", "--quadratic UA", "--cubic UUA", "--interactions UA", "--ignore U",
    "--ignore_linear A", "--keep UA", "--noconstant", "--hash all", "--hash_seed 4294967295", "--chain_hash",
    "--epsilon 2", "--softmax", "--squarecb", "--first 1", "--sgd", "--adaptive", "--normalized", "--invariant",
    "--cb_type dr", "--cb_type sm", "--rank_all", "--bit_precision 28", "--csoaa_ldf m", "--link identity",
    "--l1 1e300", "--lambda nan", "--bag 2", "-q", "--", "\x00", "\xff",
]


@pytest.fixture(scope="module")
def fuzz_bases() -> list[bytes]:
    return [vw_model_file(args, n_train=60, seed=3, n_actions=4, **kw).read_bytes() for args, kw in _FUZZ_BASES]


def _body_start(data: bytes) -> int:
    return len(data) - len(split_header(data)[1])


def _vw_truncations(bases: list[bytes], rnd, n: int) -> list:
    from tests.models.fuzzing import Case

    cases = []
    for b, data in enumerate(bases):
        cuts = set(range(_body_start(data) + 1)) | {rnd.randrange(len(data) + 1) for _ in range(n)}
        cases += [Case(f"base{b}: truncated at {c}/{len(data)}", data[:c], b) for c in sorted(cuts)]
    return cases


def _vw_byte_edits(bases: list[bytes], rnd, n: int) -> list:
    from tests.models.fuzzing import Case

    cases = []
    for b, data in enumerate(bases):
        for _k in range(n):
            buf = bytearray(data)
            ops = []
            for _ in range(rnd.randint(1, 6)):
                pos = rnd.randrange(len(buf))
                op = rnd.randrange(5)
                if op == 0:
                    buf[pos] ^= 1 << rnd.randrange(8)
                elif op == 1:
                    buf[pos] = rnd.randrange(256)
                elif op == 2:
                    del buf[pos]
                elif op == 3:
                    buf.insert(pos, rnd.randrange(256))
                else:
                    buf[pos : pos + 4] = struct.pack("<I", rnd.choice([0, 1, 2**31, 2**32 - 1, rnd.getrandbits(32)]))
                ops.append((op, pos))
            cases.append(Case(f"base{b}: byte edits {ops}", bytes(buf), b))
    return cases


def _vw_headers(bases: list[bytes], rnd, n: int) -> list:
    """Header fields rewritten behind a valid checksum, so they reach the option parser and the weight reader."""
    from tests.models.fuzzing import Case

    cases = []
    for b, data in enumerate(bases):
        f, body = split_header(data)
        for _k in range(n):
            g = dict(f)
            what = rnd.randrange(4)
            if what == 0:
                g["bits"] = rnd.choice([0, 1, 2, 10, 18, 20, 24, 27, 28, 29, 30, 31, 32, 33, 2**31, 2**32 - 1])
            elif what == 1:
                opts = " ".join(rnd.choice(_TOKENS) for _ in range(rnd.randint(0, 7)))
                g["options"] = (" " + opts).encode("utf-8", "surrogateescape") + b"\x00"
                g["bits"] = rnd.choice([g["bits"], 28, 12])
            elif what == 2:
                g["version"] = rnd.choice([b"9.0.0\x00", b"9.99.999\x00", b"10.0.0\x00", b"8.9.0\x00", b"9.1\x00",
                                           bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 13)))])
                g["id"] = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 40)))
            else:
                g["lda"] = rnd.choice([0, 0, 1, 2**32 - 1])
                g["ngram"] = [bytes(rnd.randrange(256) for _ in range(3)) for _ in range(rnd.choice([0, 0, 1, 3]))]
                g["labels"] = bytes(rnd.randrange(256) for _ in range(8))
            cases.append(Case(f"base{b}: header {what}: { {k2: g[k2] for k2 in g if g[k2] != f[k2]} }",
                              join_header(g, body), b))
    return cases


def _vw_sizes(bases: list[bytes], rnd, n: int) -> list:
    """Huge declared sizes: length prefixes, -b 28..32 over few or many records, record indices and states."""
    from tests.models.fuzzing import Case

    cases = []
    for b, data in enumerate(bases):
        f, body = split_header(data)
        # Length prefixes of the header's strings and counts, set to huge values (checksum left as is).
        offsets = [0]  # version length
        o = 4 + len(f["version"])
        offsets.append(o)  # id length
        o += 4 + len(f["id"]) + 1 + 8 + 4 + 4
        offsets.append(o)  # ngram count
        o += 4 + 3 * len(f["ngram"])
        offsets.append(o)  # skips count
        o += 4 + 3 * len(f["skips"])
        offsets.append(o)  # options length
        for off in offsets:
            for value in (2**31, 2**32 - 1, 1 << 20, 257, 14):
                buf = bytearray(data)
                struct.pack_into("<I", buf, off, value)
                cases.append(Case(f"base{b}: u32 at {off} = {value}", bytes(buf), b))
        resume = b != 1  # base 1 is predict-only: no gradient-descent state
        state = body[: (8 if b == 3 else 0) + 16 + 1 + (128 if resume else 0)]
        rec = 16 if b in (0, 2) else 8  # (index, weight, adaptive, normalized) or (index, weight)
        for _k in range(n):
            bits = rnd.choice([20, 24, 28, 28, 28, 29, 30, 31, 32])
            st_ = bytearray(state)
            if resume and rnd.random() < 0.7:
                off = len(st_) - 128
                struct.pack_into("<dd", st_, off + 112, rnd.choice([0.0, 1e-3, 1e30, 1e-300, 5e-324]),
                                 rnd.choice([1.0, 0.5, 1e-300, 1e300, 2.0]))
            n_rec = rnd.choice([0, 1, 2, 100, 5000, 50_000])
            if n_rec and rnd.random() < 0.5:
                idx = sorted(rnd.sample(range(1 << min(bits, 31)), n_rec)) if bits <= 31 else \
                    sorted({rnd.getrandbits(32) for _ in range(n_rec)})
            else:
                idx = [rnd.getrandbits(rnd.choice([8, 20, 28, 32])) for _ in range(n_rec)]
            pool = [0.0, 1.0, -2.5, 1e-30, rnd.uniform(-1, 1)] + ([3e38, 1e31] if rnd.random() < 0.2 else [])
            vals = [rnd.choice(pool) for _ in idx]
            per = rec // 4 - 1
            recs = b"".join(struct.pack("<I", i) + struct.pack("<f", v) + b"\x00" * (4 * (per - 1))
                            for i, v in zip(idx, vals))
            if rnd.random() < 0.1:
                recs = recs[: -rnd.randint(1, 3)] if recs else b"\x01"
            g = dict(f)
            g["bits"] = bits
            cases.append(Case(f"base{b}: -b {bits}, {n_rec} records, state {bytes(st_[-16:]).hex()}",
                              join_header(g, bytes(st_) + recs), b))
    return cases


def _vw_states(bases: list[bytes], rnd, n: int) -> list:
    """The reductions' saved state (counters, save_resume flag, gradient-descent state) as random bytes."""
    from tests.models.fuzzing import Case

    cases = []
    for b, data in enumerate(bases):
        start = _body_start(data)
        for _k in range(n):
            buf = bytearray(data)
            span = rnd.choice([8, 16, 17, 25, 145, 153])
            for i in range(start, min(start + span, len(buf))):
                if rnd.random() < 0.3:
                    buf[i] = rnd.randrange(256)
            cases.append(Case(f"base{b}: random state bytes in [{start}, {start + span})", bytes(buf), b))
    return cases


def _vw_junk(bases: list[bytes], rnd, n: int) -> list:
    from tests.models.fuzzing import Case

    prefix = bases[0][: 4 + split_header(bases[0])[0]["version"].__len__()]
    cases = [Case("empty", b"", 0), Case("one byte", b"\x07", 0), Case("version only", prefix, 0)]
    for k in range(n):
        size = rnd.choice([1, 8, 64, 400, 5000])
        noise = bytes(rnd.randrange(256) for _ in range(size))
        cases.append(Case(f"junk #{k}: {size} bytes", rnd.choice([b"", prefix]) + noise, 0))
    return cases


def run_vw_case(case, bases: list[bytes], tmpdir: str, seed: int) -> dict:
    """The fuzzing runner (in a worker process): load one VW mutant; a loaded model must score finite costs."""
    import os

    from tests.models.fuzzing import error_verdict

    try:
        if case.via == "path":
            path = os.path.join(tmpdir, "mutant.vw")
            with open(path, "wb") as fh:
                fh.write(case.data)
            model = nba.load_model(path, format="vw")
        else:
            model = load_vw(case.data)
    except nba.ModelFormatError as e:
        return {"kind": "rejected"} if str(e).strip() else {"kind": "error", "where": "load", "msg": "empty message"}
    except BaseException as e:  # noqa: BLE001 - anything but ModelFormatError is the failure
        return error_verdict("load", e)
    step = "score"
    try:
        columns = [("User", f"u{j}") for j in range(20)] + [("Geo", "city", "paris")]
        bound = model.bind_shared(columns)
        rng = np.random.default_rng(seed)
        for shared, actions, _, _ in DECISIONS:
            acts = model.prepare_actions(actions)
            step = "score"
            costs = model.score(shared, acts)
            step = "score_vector"
            x = rng.uniform(-2, 2, len(columns))
            x[rng.random(len(columns)) < 0.3] = np.nan
            vec = model.score_vector(x, bound, acts, negate=True)
            if not (np.isfinite(costs).all() and np.isfinite(vec).all()):
                return {"kind": "error", "where": step, "type": "non-finite", "msg": f"{costs} {vec}"}
        step = "pickle"
        import pickle

        again = pickle.loads(pickle.dumps(model))
        shared, actions, _, _ = DECISIONS[0]
        if not np.array_equal(again.score(shared, again.prepare_actions(actions)),
                              model.score(shared, model.prepare_actions(actions))):
            return {"kind": "error", "where": "pickle", "type": "mismatch", "msg": "unpickled model scores differ"}
    except BaseException as e:  # noqa: BLE001 - any exception from a loaded model is the failure
        return error_verdict(step, e)
    return {"kind": "loaded"}


VW_FAMILIES = {
    "truncate": (_vw_truncations, 60),
    "bytes": (_vw_byte_edits, 200),
    "header": (_vw_headers, 150),
    "sizes": (_vw_sizes, 60),
    "state": (_vw_states, 60),
    "junk": (_vw_junk, 60),
}


@pytest.mark.parametrize("family", list(VW_FAMILIES))
def test_mutated_vw_files_never_crash_hang_or_exhaust_memory(family, fuzz_bases, tmp_path):
    """Every mutant, in a child with a 1 GiB address space and 10 s: ModelFormatError, or a model that scores finite."""
    import random

    from tests.models.fuzzing import Case, assert_all_safe, report, run_isolated

    build, n = VW_FAMILIES[family]
    seed = 8_2026 + list(VW_FAMILIES).index(family)
    rnd = random.Random(seed)
    cases = build(fuzz_bases, rnd, n)
    cases = [Case(c.label, c.data, c.base, "path", c.require) if rnd.random() < 0.1 else c for c in cases]
    results = run_isolated(cases, "tests.models.test_vw_fuzz:run_vw_case", fuzz_bases, tmp_path, seed,
                           case_timeout=FUZZ_TIMEOUT_S, address_limit=FUZZ_ADDRESS_LIMIT)
    counts = assert_all_safe(cases, results)
    report(f"vw binary, {family}", counts, len(cases))
    assert counts["crash"] == counts["hang"] == counts["memory"] == 0
    if family in ("sizes", "header", "state"):
        assert counts.get("loaded", 0) > 0, f"no {family} mutant loaded: the mutations never reach the scorer"
