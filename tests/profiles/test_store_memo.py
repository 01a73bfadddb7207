"""EmbeddedProfileStore's memo of read values: a read after other reads equals a first read.

The store keeps the values of a profile's last read and, while its state and the tile of
every window stay the same, recomputes only the live features (recency, decayed scores).
The oracle is a fresh store given the same tracks and merges and read once, at the same
instant: it has nothing memoised, so it computes every value from the state.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nba.profiles import Count, Decayed, EmbeddedProfileStore, Event, Features, FirstSeen, LastValue, Recency, Sum

T0 = 1_700_000_000.0
FEATURES = Features([
    Count("views_10m", "view", window=600, bucket=60),
    Sum("spend_1h", "buy", "amount", window=3600, bucket=300),
    Decayed("heat", "view", half_life=120),
    Recency("since_view", "view"),
    LastValue("last_sku", "buy", "sku"),
    FirstSeen("first"),
    Count("views", "view"),
])

steps = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.sampled_from(["a", "b", "c"]), st.floats(0.001, 8)),
        st.tuples(st.just("view"), st.sampled_from(["a", "b", "c"]), st.floats(0, 400)),
        st.tuples(st.just("buy"), st.sampled_from(["a", "b"]), st.floats(0, 400)),
        st.tuples(st.just("alias"), st.sampled_from(["a", "b", "c"]), st.sampled_from(["a", "b", "c"])),
        st.tuples(st.just("forget"), st.sampled_from(["a", "b", "c"]), st.just(0.0)),
    ),
    max_size=50,
)


def _apply(store: EmbeddedProfileStore, op: tuple, now: float) -> None:
    kind, who, arg = op
    if kind == "alias":
        if who != arg and store.profile(who, now) is not None and store.profile(arg, now) is not None:
            store.alias(who, arg, now=now)
    elif kind == "forget":
        store.forget(who)
    else:
        props = {"amount": 2.5, "sku": f"s{int(arg)}"} if kind == "buy" else {}
        store.track(who, Event(kind, "web", now + arg - 200, props))  # late and early events around the reads


@settings(max_examples=150, deadline=None)
@given(steps=steps)
def test_a_read_after_reads_equals_a_first_read(steps):
    store = EmbeddedProfileStore(FEATURES)
    done: list[tuple[tuple, float]] = []
    now = T0
    for op in steps:
        if op[0] != "read":
            _apply(store, op, now)
            done.append((op, now))
            continue
        now += op[2]  # reads move forward in small steps: many land in the same tiles
        fresh = EmbeddedProfileStore(FEATURES)
        for past, at in done:
            _apply(fresh, past, at)
        assert store.profile(op[1], now) == fresh.profile(op[1], now)
