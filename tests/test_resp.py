"""nba._core.resp: the RedisState writer's RESP packing and its GIL-free round trip, against redis-py and a real Redis."""

from __future__ import annotations

import secrets
import socket
import struct
import threading
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from nba._core.resp import ReplyError, exchange, pack_args, pack_command, pack_remember, parse_replies
from nba.state import _REMEMBER_MANY
from tests.test_state import redis_url  # noqa: F401  (the session's redis-server)

SHA = b"0123456789abcdef0123456789abcdef01234567"
REF = redis.Connection()  # packs commands without connecting: the reference encoder

text = st.text(st.characters(codec="utf-8"), max_size=12)
remember_ops = st.lists(st.tuples(
    st.just("remember"), st.text("abcdef0123456789", min_size=1, max_size=24), text, text,
    st.integers(-(2**63), 2**63 - 1), st.binary(max_size=64), st.floats(allow_nan=False), st.booleans()),
    max_size=20)


def reference(ops: list[tuple[Any, ...]], due: str, prefix: str, fixed: tuple[Any, ...]) -> bytes:
    args: list[Any] = ["EVALSHA", SHA, 1 + len(ops), due, *(prefix + op[1] for op in ops), *fixed]
    for _, _, model, policy, arm, x, ts, active in ops:
        args += [model, policy, arm, x, struct.pack("<d", ts), b"1" if active else b"0"]
    return b"".join(REF.pack_command(*args))


@settings(max_examples=200, deadline=None)
@given(ops=remember_ops, other=st.sampled_from([("activate", "e", 1.0), ("reward", "e", 1.0, 2.0, "op")]),
       limit=st.integers(1, 25))
def test_pack_remember_is_what_redis_py_packs_with_the_start_as_little_endian_float64(ops, other, limit) -> None:
    fixed = ("3600.0", 7260, 7)
    queue = [other, *ops, other, *ops]
    packed, stop = pack_remember(queue, 1, limit, SHA, b"{ns}:due", b"{ns}:p:", pack_args(fixed), 3)
    batch = ops[:limit]
    assert stop == 1 + len(batch)  # stops at the next non-remember op, or at the limit
    assert packed == (reference(batch, "{ns}:due", "{ns}:p:", fixed) if batch else None)


def test_pack_remember_declines_other_ops_and_rejects_a_bad_input() -> None:
    assert pack_remember([("activate", "e", 1.0)], 0, 8, SHA, b"d", b"p", b"", 0) == (None, 0)
    with pytest.raises(ValueError, match="start"):
        pack_remember([], 1, 8, SHA, b"d", b"p", b"", 0)
    with pytest.raises(TypeError, match="model input as bytes"):
        pack_remember([("remember", "e", "m", "p", 1, "x", 1.0, True)], 0, 8, SHA, b"d", b"p", b"", 0)


@given(args=st.lists(st.one_of(st.binary(max_size=20), text, st.integers(-(2**70), 2**70), st.floats()),
                     max_size=8))
def test_pack_command_is_what_redis_py_packs(args) -> None:
    expected = ["CMD", *(repr(a) if isinstance(a, float) else a for a in args)]  # redis-py writes repr() too
    assert pack_command(("CMD", *args)) == b"".join(REF.pack_command(*expected))


def connected(url: str) -> tuple[redis.Connection, socket.socket]:
    pool = redis.ConnectionPool.from_url(url)
    conn = pool.make_connection()
    conn.connect()
    return conn, conn._sock


def test_exchange_reads_every_reply_kind_as_redis_py_does(redis_url) -> None:  # noqa: F811
    client = redis.Redis.from_url(redis_url)
    conn, sock = connected(redis_url)
    big = b"v" * (3 << 20)  # larger than the socket buffers: partial sends and reads, the buffer grows
    commands = [("SET", "resp:k", big), ("GET", "resp:k"), ("GET", "resp:none"), ("INCR", "resp:n"),
                ("RPUSH", "resp:l", "a", "b"), ("LRANGE", "resp:l", 0, -1), ("INCR", "resp:l"), ("PING",)]
    client.delete("resp:n", "resp:l")
    try:
        data = exchange(sock.fileno(), b"".join(pack_command(c) for c in commands), len(commands), 5.0)
        replies = parse_replies(data, len(commands))
    finally:
        conn.disconnect()
    assert replies[:6] == [b"OK", big, None, 1, 2, [b"a", b"b"]] and replies[7] == b"PONG"
    assert isinstance(replies[6], ReplyError) and replies[6].message.startswith("WRONGTYPE")
    assert isinstance(conn._parser.parse_error(replies[6].message), redis.ResponseError)


@settings(max_examples=50, deadline=None)
@given(starts=st.lists(st.one_of(st.floats(-1e300, 1e300), st.sampled_from([0.1, 1764781234.123456, 5e-324, -0.0])),
                       min_size=1, max_size=5))
def test_the_remember_script_stores_each_start_exactly(redis_url, starts) -> None:  # noqa: F811
    client = redis.Redis.from_url(redis_url)
    sha = client.script_load(_REMEMBER_MANY).encode()
    eids = [secrets.token_hex(6) for _ in starts]
    ops = [("remember", e, "m", "p", 1, b"", ts, True) for e, ts in zip(eids, starts)]
    packed, _ = pack_remember(ops, 0, 256, sha, b"{resp}:due", b"{resp}:p:", pack_args(("10.0", 60, 9)), 3)
    conn, sock = connected(redis_url)
    try:
        [reply] = parse_replies(exchange(sock.fileno(), packed, 1, 5.0), 1)
    finally:
        conn.disconnect()
    assert reply == b"1" * len(starts)
    for e, ts in zip(eids, starts):
        assert float(client.hget("{resp}:p:" + e, "s")) == ts
        assert client.zscore("{resp}:due", e) == ts + 10.0


def test_exchange_times_out_and_sees_a_closed_connection() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    try:
        with pytest.raises(TimeoutError):
            exchange(client.fileno(), b"*1\r\n$4\r\nPING\r\n", 1, 0.05)
        peer.recv(64)  # the first PING
        threading.Timer(0.05, lambda: (peer.recv(64), peer.close())).start()  # read (no reset), then close
        with pytest.raises(ConnectionError, match="closed"):
            exchange(client.fileno(), b"*1\r\n$4\r\nPING\r\n", 1, 5.0)
    finally:
        client.close()
        server.close()


def test_a_malformed_reply_is_a_connection_error() -> None:
    a, b = socket.socketpair()
    try:
        b.sendall(b"?what\r\n")
        with pytest.raises(ConnectionError, match="malformed"):
            exchange(a.fileno(), b"x", 1, 5.0)
    finally:
        a.close()
        b.close()



def test_the_writer_takes_the_gil_free_round_trip_on_a_plain_socket(redis_url, monkeypatch) -> None:  # noqa: F811
    """redis-py 8 speaks RESP3 by default: the writer's exchange must serve it (it was once skipped)."""
    import nba
    import nba.state
    from nba.state import RedisState
    from tests.test_state import CTX, N_ARMS, T0, adult, decider, namespace

    calls: list[int] = []
    real = nba.state.exchange

    def counted(fd: int, payload: bytes, replies: int, timeout: float) -> bytes:
        calls.append(replies)
        return real(fd, payload, replies, timeout)

    monkeypatch.setattr(nba.state, "exchange", counted)
    state = RedisState(redis_url, namespace=namespace(), flush_interval=60)
    dec = decider(state, nba.BetaThompson(N_ARMS))
    eids = [dec.decide(adult(i), CTX, now=T0).event_id for i in range(5)]
    dec.flush()
    assert calls and state.stats()["written"] == 5
    assert all(state._client.hget(state._prefix + e, "s") is not None for e in eids)
    dec.close()
