"""Vowpal Wabbit cb models: nba's native scores against VW's own predictions.

Every parity test trains a real model with ``vowpalwabbit`` (cached on disk by
``benchmarks.workloads.vw_model_file``), loads the saved binary with nba and
compares nba's per-action costs with the raw per-action predictions of the same
file loaded by VW (``-i model -t``) on unseen examples. VW's raw cb_adf score of
an action is its example's partial prediction; ``test_partial_predictions_are_
the_cb_adf_scores`` establishes that against ``Workspace.predict`` for cb_adf.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nba
from benchmarks.workloads import vw_examples, vw_model_file, vw_text
from nba._core.vw import VWCore, vw_hash, vw_hash_string_feature
from nba.log import export_dsjson
from nba.models.vw import ActionSet, VWModel, load_vw, looks_like_vw
from tests.models.conformance import ScorerKind, check_scorer
from tests.models.vw_cases import vw_scores

vowpalwabbit = pytest.importorskip("vowpalwabbit")

TOL = 1e-5
MASK28 = (1 << 28) - 1
CONSTANT = 11650396


# --------------------------------------------------------------------------- helpers


def _workspace(args: str) -> vowpalwabbit.Workspace:
    return vowpalwabbit.Workspace(args + " --quiet")


def parity(path: Path, fmt: str, n: int, seed: int, **example_kw) -> tuple[np.ndarray, np.ndarray]:
    """(nba costs, VW costs) on ``n`` unseen decisions, stacked."""
    model = nba.load_model(path)
    vw = _workspace(f"-i {path} -t" + (" --json" if fmt == "json" else ""))
    ours, ref = [], []
    try:
        for shared, actions, _, _ in vw_examples(n, seed, **example_kw):
            ours.append(model.score(shared, model.prepare_actions(actions)))
            ref.append(vw_scores(vw, shared, actions, fmt))
    finally:
        vw.finish()
    return np.concatenate(ours), np.concatenate(ref)


# (VW arguments, example format, vw_examples keywords)
CONFIGS = [
    ("--cb_adf -b 10", "text", {"strings": False}),
    ("--cb_adf -b 18 -q UA", "json", {}),
    ("--cb_adf -b 12 -q UA", "text", {}),
    ("--cb_explore_adf -b 16 -q UA -q GA", "json", {}),
    ("--cb_explore_adf -b 20 --interactions UA --interactions GA", "json", {}),
    ("--cb_adf -b 22 --cubic UGA -q UA", "json", {}),
    ("--cb_adf -b 14 --interactions UGA --interactions GA", "text", {}),
    ("--cb_adf -b 16 -q UU --interactions AAU", "json", {"n_shared": 8}),
    ("--cb_adf -b 16 -q AU -q UA -q GG", "json", {}),
    ("--cb_explore_adf --epsilon 0.2 -b 12 -q UA --ignore G", "json", {}),
    ("--cb_adf --noconstant -b 14 -q UA", "json", {}),
    ("--cb_adf --hash_seed 12345 -b 20 -q GA", "json", {}),
    ("--cb_adf --hash all -b 15 -q UA", "json", {}),
    ("--cb_adf --chain_hash -b 16 -q GA", "json", {}),
    ("--cb_adf --ignore_linear U -b 16 -q UA", "json", {}),
    ("--cb_adf --keep UA -b 16 -q UA", "json", {}),
    ("--cb_explore_adf --softmax --lambda 5 -b 12 -q UA", "json", {}),
    ("--cb_explore_adf --squarecb -b 12 -q UA", "json", {}),
    ("--cb_explore_adf --first 3 -b 12 -q UA", "json", {}),
    ("--cb_adf --cb_type dr -b 16 -q UA", "json", {}),
    ("--cb_adf --cb_type ips --sgd -b 12 -q UA", "json", {}),
    ("--cb_adf --adaptive -b 12 -q UA", "json", {}),
    ("--cb_adf --l1 1e-5 --l2 1e-4 -b 12 -q UA", "json", {}),
    ("--cb_adf --predict_only_model -b 12 -q UA", "json", {}),
    ("--cb_adf --sparse_weights -b 20 -q UA", "json", {}),
    ("--cb_adf --cb_type sm --initial_weight 0.01 -b 10 -q UA", "json", {}),
    ("--cb_adf -b 18 -q UA", "json", {"n_shared": 300, "n_actions": 3}),
]


@pytest.mark.parametrize(("args", "fmt", "kw"), CONFIGS, ids=[f"{a} [{f}]{' big' if k.get('n_shared', 0) > 256 else ''}" for a, f, k in CONFIGS])
def test_scores_match_vw_predictions(args, fmt, kw):
    path = vw_model_file(args, n_train=300, seed=1, fmt=fmt, **kw)
    ours, ref = parity(path, fmt, n=30 if kw.get("n_shared", 0) > 256 else 200, seed=2, **kw)
    assert ours.dtype == np.float64
    assert np.ptp(ref) > 1e-3, "the reference model learned nothing; the comparison would be vacuous"
    np.testing.assert_allclose(ours, ref, rtol=TOL, atol=TOL)


def test_partial_predictions_are_the_cb_adf_scores():
    path = vw_model_file("--cb_adf -b 16 -q UA", n_train=300, seed=1)
    vw = _workspace(f"-i {path} -t")
    model = nba.load_model(path)
    try:
        for shared, actions, _, _ in vw_examples(30, 3):
            predicted = np.array(vw.predict(vw_text(shared, actions)))
            partial = vw_scores(vw, shared, actions, "text")
            np.testing.assert_array_equal(predicted.astype(np.float32), partial.astype(np.float32))
            np.testing.assert_allclose(model.score(shared, model.prepare_actions(actions)), predicted, atol=TOL)
    finally:
        vw.finish()


def test_text_and_json_trained_models_score_alike():
    """The same decisions in VW text and JSON form train identical models: the workloads agree."""
    a = load_vw(vw_model_file("--cb_adf -b 14 -q UA", n_train=100, seed=4, fmt="text"))
    b = load_vw(vw_model_file("--cb_adf -b 14 -q UA", n_train=100, seed=4, fmt="json"))
    np.testing.assert_allclose(a.weights, b.weights, atol=1e-5)


def test_a_model_trained_on_nba_dsjson_exports_scores_like_vw(tmp_path):
    """Log decisions with nba, export dsjson, train VW on it, and score the logged features with nba."""
    decisions = vw_examples(300, 12, n_actions=4)
    log = nba.DecisionLog(tmp_path / "log")
    arms = {f"arm{k}": a for k, a in enumerate(decisions[0][1])}
    log.register_catalog("offers", arms)
    for i, (shared, _, chosen, cost) in enumerate(decisions):
        log.append_decision(f"e{i}", actions=list(arms), pmf=[0.25] * 4, chosen=[chosen], features=shared,
                            catalog_id="offers")
        log.append_outcome(f"e{i}", -cost)
    log.close()
    export = tmp_path / "train.dsjson"
    export_dsjson(tmp_path / "log", export)
    lines = export.read_text().splitlines()
    vw = _workspace("--cb_explore_adf --dsjson -q UA -q GA -b 16")
    for line in lines:
        exs = vw.parse(line)
        vw.learn(exs)
        vw.finish_example(exs)
    vw.save(str(tmp_path / "m.vw"))
    model = load_vw(tmp_path / "m.vw")
    ours, ref = [], []
    for line in lines[:100]:
        context = json.loads(line)["c"]
        shared = {k: v for k, v in context.items() if k != "_multi"}
        ours.append(model.score(shared, model.prepare_actions(context["_multi"])))
        exs = vw.parse(line)
        vw.predict(exs)
        ref.append([e.get_partial_prediction() for e in exs[1:]])
        vw.finish_example(exs)
    vw.finish()
    assert np.ptp(ref) > 1e-3
    np.testing.assert_allclose(np.concatenate(ours), np.concatenate(ref), rtol=TOL, atol=TOL)


# --------------------------------------------------------------------------- hashing


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_pad = st.sampled_from(["", " ", "\t", " \n", "\x00"])
_digits = st.builds(lambda a, n, b: f"{a}{n}{b}", _pad, st.integers(0, 10**20), _pad)
_names = st.one_of(_text, _digits)


_WORKSPACES: dict[str, object] = {}


@pytest.fixture(scope="module", autouse=True)
def _finish_shared_workspaces():
    """Free the module's -b 28 workspaces (4 GiB of address space each) when it ends: left
    mapped, they made every later os.fork() in the test process fail with ENOMEM."""
    yield
    while _WORKSPACES:
        _WORKSPACES.popitem()[1].finish()


def _shared_workspace(args: str):
    """One workspace per argument string for the whole module (hashing tests only read from it)."""
    if args not in _WORKSPACES:
        _WORKSPACES[args] = _workspace(args)
    return _WORKSPACES[args]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(_names, min_size=1, max_size=8), seed=st.sampled_from([0, 7, 123456789]),
       hash_all=st.booleans())
def test_feature_and_namespace_hashes_equal_vw(names, seed, hash_all):
    vw = _shared_workspace(f"-b 28 --hash_seed {seed}" + (" --hash all" if hash_all else ""))
    for name in names:
        ns = vw.hash_space(name)
        assert vw_hash(name.encode(), seed, hash_all) & MASK28 == ns & MASK28
        assert vw_hash(name.encode(), ns, hash_all) & MASK28 == vw.hash_feature(name, ns)


def _encode(shared: dict, *, seed: int = 0, hash_all: bool = False, chain: bool = False) -> list[tuple[int, float]]:
    """nba's hashed features of one example, as sorted (index & 2**28-1, value) pairs."""
    core = VWCore(np.zeros(2, np.float32), 1, seed, hash_all, chain, True, b"", b"", b"", np.zeros((0, 4), np.int32))
    acts = core.encode_actions([shared])
    assert not isinstance(acts, int), "nba rejected features VW accepts"
    return sorted(zip((acts.h & MASK28).tolist(), acts.v.astype(np.float64).tolist()))


def _vw_json_features(vw, shared: dict) -> list[tuple[int, float]]:
    exs = vw.parse(json.dumps({**shared, "_multi": [{"Action": {"x": 1}}]}))
    try:
        feats = [(i & MASK28, v) for i, v in exs[0].iter_features() if i != CONSTANT]
    finally:
        vw.finish_example(exs)
    return sorted(feats)


_value = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, width=32),
    st.integers(-1000, 1000),
    st.just(0),
    st.just(0.0),
    st.booleans(),
    st.none(),
    st.text(alphabet=st.sampled_from("ab z:|\t_-9é"), max_size=6),
)
# No "a" or "p": VW's JSON parser reads "_a" and "_p" as label arrays.
_key = st.text(alphabet=st.sampled_from("bcUG_ 19"), min_size=1, max_size=5)
_doc = st.dictionaries(
    st.sampled_from(["User", "Geo", "U2", " ", "_skip", "9"]),
    st.dictionaries(_key, _value, max_size=5),
    max_size=4,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_doc, seed=st.sampled_from([0, 3]), chain=st.booleans(), hash_all=st.booleans())
def test_dict_features_hash_like_vw_json_parser(doc, seed, chain, hash_all):
    """{"segment": "gold"} is segmentgold, numbers keep their name, 0/False/None and '_' keys vanish."""
    vw = _shared_workspace(f"--cb_adf --json -b 28 --hash_seed {seed}" + (" --chain_hash" if chain else "")
                           + (" --hash all" if hash_all else ""))
    assert _encode(doc, seed=seed, hash_all=hash_all, chain=chain) == _vw_json_features(vw, doc)


def test_string_value_is_name_plus_escaped_value():
    ns = vw_hash(b"Geo", 0)
    assert _encode({"Geo": {"city": "new york"}}) == _encode({"Geo": {"citynew_york": 1.0}})
    assert _encode({"Geo": {"k": "a:b|c\td"}}) == _encode({"Geo": {"ka_b_c_d": True}})
    assert vw_hash_string_feature(b"city", b"new york", ns) == vw_hash(b"citynew_york", ns)
    assert _encode({"Geo": {"flag": True, "off": False, "none": None, "zero": 0, "_hidden": 3.0}}) == _encode(
        {"Geo": {"flag": 1}}
    )
    assert _encode({"_meta": {"x": 1.0}, "Geo": {}}) == []


def test_zero_valued_features_are_absent_in_vw_too():
    vw = _workspace("--cb_adf -b 28")
    try:
        exs = vw.parse(["shared |User a:0 b:1.5 c:0.0", "|Action x"])
        feats = [f for f in exs[0].iter_features() if f[0] != CONSTANT]
        vw.finish_example(exs)
    finally:
        vw.finish()
    assert [v for _, v in feats] == [1.5]
    assert _encode({"User": {"a": 0, "b": 1.5, "c": 0.0}}) == [(feats[0][0] & MASK28, 1.5)]


# --------------------------------------------------------------------------- the bound vector path


@pytest.fixture(scope="module")
def model() -> VWModel:
    return load_vw(vw_model_file("--cb_explore_adf -b 16 -q UA -q GA --cubic UGA", n_train=300, seed=1, fmt="json"))


@pytest.fixture(scope="module")
def actions(model) -> ActionSet:
    return model.prepare_actions(vw_examples(1, 9)[0][1])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(st.just(0.0), st.floats(-5, 5, allow_nan=False)), min_size=12, max_size=12))
def test_score_vector_equals_score_of_the_same_features(model, actions, values):
    columns = [("User", f"u{j}") for j in range(10)] + [("Geo", "mobile"), ("Geo", "citytokyo")]
    bound = model.bind_shared(columns)
    x = np.array(values)
    shared: dict[str, dict[str, float]] = {}
    for (ns, name), v in zip(columns, values):
        if v != 0.0:
            shared.setdefault(ns, {})[name] = v
    np.testing.assert_array_equal(model.score_vector(x, bound, actions), model.score(shared, actions))


def test_score_vector_with_many_columns_equals_score(model, actions):
    rng = np.random.default_rng(5)
    columns = [("User", f"u{j}") for j in range(400)]
    x = rng.standard_normal(400)
    x[::7] = 0.0
    shared = {"User": {name: float(v) for (_, name), v in zip(columns, x) if v != 0.0}}
    np.testing.assert_array_equal(model.score_vector(x, model.bind_shared(columns), actions),
                                  model.score(shared, actions))


def test_bound_string_columns_are_one_hot_string_features(model, actions):
    bound = model.bind_shared([("Geo", "city", "new york"), ("Geo", "city", "tokyo"), ("User", "u3")])
    np.testing.assert_array_equal(
        model.score_vector(np.array([1.0, 0.0, 2.5]), bound, actions),
        model.score({"Geo": {"city": "new york"}, "User": {"u3": 2.5}}, actions),
    )
    with pytest.raises(nba.SchemaError, match="column 0"):
        model.bind_shared([("Geo", "city", 3)])


def test_bound_columns_vw_ignores_contribute_nothing(model, actions):
    bound = model.bind_shared([("User", "u1"), ("User", "_private"), ("_meta", "u1")])
    np.testing.assert_array_equal(
        model.score_vector(np.array([1.5, 9.0, 9.0]), bound, actions), model.score({"User": {"u1": 1.5}}, actions)
    )


# --------------------------------------------------------------------------- input errors


@pytest.mark.parametrize(
    ("shared", "needle"),
    [
        ({"User": {"u1": float("nan")}}, "User/u1"),
        ({"User": {"u1": float("inf")}}, "User/u1"),
        ({"User": {"u1": 1e39}}, "float32"),
        ({"User": {"u1": [1, 2]}}, "User/u1"),
        ({"User": {"u1": b"x"}}, "User/u1"),
        ({"User": {"u1": {"nested": 1}}}, "User/u1"),
        ({"User": {3: 1.0}}, "feature name 3"),
        ({"User": [("u1", 1.0)]}, "namespace 'User'"),
        ({"": {"u1": 1.0}}, "namespace ''"),
        ({7: {"u1": 1.0}}, "namespace 7"),
        ([("User", {"u1": 1.0})], "expected {namespace"),
        (None, "expected {namespace"),
    ],
)
def test_invalid_shared_features_raise_schema_error_naming_them(model, actions, shared, needle):
    with pytest.raises(nba.SchemaError, match=None) as info:
        model.score(shared, actions)
    assert needle in str(info.value)


def test_invalid_action_features_name_the_action(model):
    acts = [{"Action": {"price": 1.0}}, {"Action": {"price": float("nan")}}]
    with pytest.raises(nba.SchemaError, match="action 1.*Action/price"):
        model.prepare_actions(acts)
    with pytest.raises(nba.SchemaError, match="action 0"):
        model.prepare_actions(["not a dict"])


def test_infinite_vector_entries_name_the_column(model, actions):
    bound = model.bind_shared([("User", "u1"), ("User", "u2")])
    for bad in (np.inf, -np.inf, 1e39):
        with pytest.raises(nba.SchemaError, match=r"column 1 \('User', 'u2'\)"):
            model.score_vector(np.array([1.0, bad]), bound, actions)
    with pytest.raises(nba.SchemaError, match="3 columns"):
        model.score_vector(np.zeros(3), bound, actions)
    with pytest.raises(nba.SchemaError, match="1-d"):
        model.score_vector(np.zeros((2, 1)), bound, actions)
    with pytest.raises(nba.SchemaError, match="column 0"):
        model.bind_shared([("", "u1")])


def test_negate_gives_exactly_minus_the_costs(model, actions):
    shared = vw_examples(1, 3)[0][0]
    costs = model.score(shared, actions)
    np.testing.assert_array_equal(model.score(shared, actions, negate=True), -costs)
    bound = model.bind_shared([("User", name) for name in shared["User"]])
    x = np.array(list(shared["User"].values()))
    np.testing.assert_array_equal(model.score_vector(x, bound, actions, negate=True),
                                  -model.score_vector(x, bound, actions))


def test_out_must_fit(model, actions):
    shared = vw_examples(1, 3)[0][0]
    out = np.empty(actions.n_actions)
    assert model.score(shared, actions, out=out) is out
    for bad in (np.empty(actions.n_actions + 1), np.empty(actions.n_actions, np.float32), [0.0] * actions.n_actions):
        with pytest.raises(nba.SchemaError, match="out must be"):
            model.score(shared, actions, out=bad)


def test_actions_from_a_model_that_hashes_differently_are_refused(model):
    other = load_vw(vw_model_file("--cb_adf --hash_seed 3 -b 12 -q UA", n_train=50, seed=1, fmt="json"))
    acts = other.prepare_actions(vw_examples(1, 9)[0][1])
    with pytest.raises(nba.SchemaError, match="prepare them with this model"):
        model.score({"User": {"u1": 1.0}}, acts)
    with pytest.raises(nba.SchemaError, match="ActionSet"):
        model.score({"User": {"u1": 1.0}}, [{"Action": {}}])


def test_actions_prepared_by_a_same_layout_model_are_accepted(model, actions):
    twin = load_vw(vw_model_file("--cb_explore_adf -b 16 -q UA -q GA --cubic UGA", n_train=200, seed=2, fmt="json"))
    shared = vw_examples(1, 3)[0][0]
    own = twin.prepare_actions(vw_examples(1, 9)[0][1])
    np.testing.assert_array_equal(twin.score(shared, actions), twin.score(shared, own))
    assert not np.array_equal(twin.score(shared, own), model.score(shared, actions))


# --------------------------------------------------------------------------- loading and the model object


def test_every_way_of_loading_gives_the_same_scores(model, actions):
    path = vw_model_file("--cb_explore_adf -b 16 -q UA -q GA --cubic UGA", n_train=300, seed=1, fmt="json")
    shared = vw_examples(1, 3)[0][0]
    expected = model.score(shared, actions)
    for source in (str(path), path, path.read_bytes(), bytearray(path.read_bytes())):
        other = nba.load_model(source)
        assert isinstance(other, VWModel)
        np.testing.assert_array_equal(other.score(shared, actions), expected)
    np.testing.assert_array_equal(load_vw(memoryview(path.read_bytes())).score(shared, actions), expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).score(shared, actions), expected)


def test_info_describes_the_model(model):
    info = model.info
    assert (info.bits, info.exploration, info.epsilon, info.cb_type) == (16, "epsilon", 0.05, "mtr")
    assert info.interactions == ("GA", "UA", "UGA") and info.constant and info.save_resume
    assert info.vw_version == "9.11.9" or info.vw_version.startswith("9.")
    assert info.num_weights == int(np.count_nonzero(model.weights)) > 0
    assert model.weights.shape == (1 << 16,) and not model.weights.flags.writeable
    assert "--cb_explore_adf" in info.options and "VWModel(" in repr(model)


def test_nba_inspect_summarizes_a_vw_model(capsys):
    from nba.cli import main

    path = vw_model_file("--cb_explore_adf -b 16 -q UA -q GA --cubic UGA", n_train=300, seed=1, fmt="json")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cb_explore_adf" in out and "-b 16" in out and "GA UA UGA" in out and "epsilon 0.05" in out


def test_weights_equal_workspace_weights(model):
    path = vw_model_file("--cb_explore_adf -b 16 -q UA -q GA --cubic UGA", n_train=300, seed=1, fmt="json")
    vw = _workspace(f"-i {path} -t")
    try:
        idx = np.flatnonzero(model.weights)[:200]
        assert [vw.get_weight(int(i)) for i in idx] == model.weights[idx].tolist()
    finally:
        vw.finish()


def test_looks_like_vw_only_for_vw_models():
    path = vw_model_file("--cb_adf -b 10", n_train=20, seed=1)
    assert looks_like_vw(path.read_bytes()[:64])
    for head in (b"", b"tree\nversion=v4\n", b"\x07\x00\x00\x009.11.9", b"\x07\x00\x00\x00abcdefg\x00", b"\xff" * 64):
        assert not looks_like_vw(head)


def test_empty_catalogue_and_featureless_actions(model):
    shared = vw_examples(1, 3)[0][0]
    assert model.score(shared, model.prepare_actions([])).shape == (0,)
    costs = model.score(shared, model.prepare_actions([{}, {"Action": {}}]))
    assert costs[0] == costs[1] and np.isfinite(costs).all()
    assert len(model.prepare_actions([{}, {}])) == 2


def test_scoring_does_not_depend_on_the_hash_cache():
    path = vw_model_file("--cb_adf -b 14 -q UA -q GA", n_train=100, seed=1, fmt="json")
    cached, uncached = load_vw(path), load_vw(path, hash_cache=0)
    decisions = vw_examples(20, 6)
    acts = cached.prepare_actions(decisions[0][1])
    first = [cached.score(s, acts) for s, _, _, _ in decisions]
    again = [cached.score(s, acts) for s, _, _, _ in decisions]
    cached._core.clear_cache()
    cleared = [cached.score(s, acts) for s, _, _, _ in decisions]
    never = [uncached.score(s, uncached.prepare_actions(decisions[0][1])) for s, _, _, _ in decisions]
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, cleared)
    np.testing.assert_array_equal(first, never)


# --------------------------------------------------------------------------- the conformance battery


_BATTERY_ACTIONS = vw_examples(1, 11)[0][1]


def _vw_batch(model: VWModel, n: int, seed: int) -> list[dict]:
    return [shared for shared, _, _, _ in vw_examples(n, seed)]


def _vw_score(model: VWModel, batch) -> np.ndarray:
    if not isinstance(batch, list):
        raise nba.SchemaError("a batch is a list of shared feature dicts")
    acts = model.prepare_actions(_BATTERY_ACTIONS)
    return np.array([model.score(shared, acts) for shared in batch]).reshape(len(batch), acts.n_actions)


VW_KIND = ScorerKind(
    name="vw-cb_explore_adf",
    loaders=[lambda: load_vw(vw_model_file("--cb_explore_adf -b 16 -q UA -q GA", n_train=300, seed=1, fmt="json"))],
    make_input=_vw_batch,
    score=_vw_score,
    take=lambda batch, i: batch[i : i + 1],
    bad_inputs=lambda model: [
        ("NaN feature", [{"User": {"u1": float("nan")}}], nba.SchemaError),
        ("a list value", [{"User": {"u1": [1.0]}}], nba.SchemaError),
        ("namespace not a dict", [{"User": 1.0}], nba.SchemaError),
        ("a string instead of features", ["User"], nba.SchemaError),
        ("not a batch", {"User": {}}, nba.SchemaError),
    ],
)


def test_vw_models_pass_the_conformance_battery():
    check_scorer(VW_KIND.loaders[0](), VW_KIND.make_input, VW_KIND)


# --------------------------------------------------------------------------- hardening (issue 8)


def test_rank_all_models_load_and_score_like_vw():
    """--rank_all only sorts what VW prints to -p; the per-action scores are VW's."""
    for args in ("--cb_adf --rank_all -b 12 -q UA", "--cb_explore_adf --rank_all -b 12 -q UA"):
        path = vw_model_file(args, n_train=300, seed=1, fmt="json")
        assert "--rank_all" in load_vw(path).info.options
        ours, ref = parity(path, "json", n=100, seed=2)
        assert np.ptp(ref) > 1e-3
        np.testing.assert_allclose(ours, ref, rtol=TOL, atol=TOL)


@pytest.fixture(scope="module")
def missing_setup():
    path = vw_model_file("--cb_adf -b 16 -q UA --cubic UUA", n_train=300, seed=1, fmt="json", strings=False)
    return path, load_vw(path)


def test_nan_vector_entries_score_as_the_example_without_those_features(missing_setup):
    """A missing value (NaN in x) is an absent feature: exactly nba's dict score and VW's prediction without it."""
    path, model = missing_setup
    rng = np.random.default_rng(88)
    columns = [("User", f"u{j}") for j in range(60)]
    bound = model.bind_shared(columns)
    vw = _workspace(f"-i {path} -t --json")
    try:
        for k, (_, actions, _, _) in enumerate(vw_examples(150, 31, strings=False)):
            x = np.round(rng.uniform(-2, 2, len(columns)), 4)
            x[rng.random(len(columns)) < rng.choice([0.0, 0.3, 0.8, 1.0])] = np.nan
            x[rng.random(len(columns)) < 0.2] = 0.0
            present = {name: float(v) for (_, name), v in zip(columns, x) if not np.isnan(v) and v != 0.0}
            shared = {"User": present}
            acts = model.prepare_actions(actions)
            got = model.score_vector(x, bound, acts)
            np.testing.assert_array_equal(got, model.score(shared, acts), err_msg=f"case {k}")
            np.testing.assert_allclose(got, vw_scores(vw, shared, actions, "json"), rtol=TOL, atol=TOL)
            np.testing.assert_array_equal(model.score_vector(x, bound, acts, negate=True), -got)
    finally:
        vw.finish()


def test_a_nan_in_an_ignored_or_unbound_column_changes_nothing(model, actions):
    bound = model.bind_shared([("User", "u1"), ("_hidden", "u2"), ("User", "_u3")])
    base = model.score_vector(np.array([1.5, 0.0, 0.0]), bound, actions)
    np.testing.assert_array_equal(model.score_vector(np.array([1.5, np.nan, np.nan]), bound, actions), base)


_SURROGATE = "\ud800"


@pytest.mark.parametrize(
    "shared",
    [
        {_SURROGATE: {"a": 1.0}},
        {"User" + _SURROGATE: {"a": 1.0}},
        {"User": {"a" + _SURROGATE: 1.0}},
        {"User": {"ok": 1.0, _SURROGATE: True}},
        {"User": {"ok": 1.0, "city": "x" + _SURROGATE}},
        {"User": {"city" + _SURROGATE: "paris"}},
    ],
    ids=["namespace", "namespace suffix", "feature name", "bool feature name", "string value", "string name"],
)
def test_lone_surrogates_raise_schema_error_and_change_nothing(model, actions, shared):
    before = model.score({"User": {"ok": 1.0}}, actions)
    with pytest.raises(nba.SchemaError, match="not valid text"):
        model.score(shared, actions)
    with pytest.raises(nba.SchemaError, match="action 1.*not valid text"):
        model.prepare_actions([{"Action": {"p": 1.0}}, shared])
    cols = [(ns, name, v) if isinstance(v, str) else (ns, name) for ns, f in shared.items() for name, v in f.items()]
    with pytest.raises(nba.SchemaError, match="not valid text"):
        model.bind_shared(cols)
    np.testing.assert_array_equal(model.score({"User": {"ok": 1.0}}, actions), before)


def test_the_hash_cache_is_bounded_by_bytes_not_entries():
    import tracemalloc

    path = vw_model_file("--cb_adf -b 14 -q UA", n_train=50, seed=1, fmt="json")
    model = load_vw(path)
    acts = model.prepare_actions([{"Action": {"p": 1.0}}])
    rng = np.random.default_rng(4)
    long = ["".join(rng.choice(list("abcdefgh"), 100_000)) for _ in range(40)]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(2000):
            s = long[i % 40] + str(i)  # 2,000 distinct 100 KB names, as names and as string values
            model.score({"User": {s: 1.0}, "Geo": {"city": s}}, acts)
            del s
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 1 << 20, f"the hash cache kept {grown / 2**20:.1f} MiB of long names"
    assert model._core.cached_bytes < 4096
    # Short names are cached up to the byte budget, whatever the entry limit says.
    small = load_vw(path, hash_cache=10**9, hash_cache_bytes=64 << 10)
    for i in range(5000):
        small.score({"User": {f"name{i:06d}": 1.0}}, acts)
    assert 60 << 10 <= small._core.cached_bytes <= 64 << 10
    # Cached or not, the scores are the same.
    fresh = load_vw(path, hash_cache=0)
    probe = {"User": {"name000001": 1.0, long[0]: 2.0}, "Geo": {"city": long[1]}}
    np.testing.assert_array_equal(small.score(probe, acts), fresh.score(probe, fresh.prepare_actions([{"Action": {"p": 1.0}}])))
