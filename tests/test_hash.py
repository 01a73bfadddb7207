"""The core's hash kernels against published test vectors."""

import pytest

from nba._core import hashing as hashing_core


@pytest.mark.parametrize(
    ("data", "seed", "expected"),
    [
        (b"", 0, 0),
        (b"", 1, 0x514E28B7),
        (b"", 0xFFFFFFFF, 0x81F16F39),
        (b"\xff\xff\xff\xff", 0, 0x76293B50),
        (b"!Ce\x87", 0, 0xF55B516B),
        (b"!Ce", 0, 0x7E4A8634),
        (b"!C", 0, 0xA0F7B07A),
        (b"!", 0, 0x72661CF4),
        (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
        (b"Hello, world!", 1234, 0xFAF6CDB3),
        (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
    ],
)
def test_murmurhash3_matches_reference_vectors(data, seed, expected):
    assert hashing_core.murmurhash3_32(data, seed) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", 0x811C9DC5), (b"a", 0xE40C292C), (b"foobar", 0xBF9CF968)],
)
def test_fnv1a_32_matches_reference_vectors(data, expected):
    assert hashing_core.fnv1a_32(data) == expected


def test_splitmix64_is_a_bijection_on_a_sample():
    outs = {hashing_core.splitmix64(i) for i in range(10_000)}
    assert len(outs) == 10_000
