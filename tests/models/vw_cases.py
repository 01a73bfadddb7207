"""Vowpal Wabbit model-file surgery and reference scores shared by the VW suites.

A helper module, not a test module: ``test_vw``, ``test_vw_fuzz`` and
``test_loader_hostile`` import these instead of each other. ``split_header`` /
``join_header`` / ``rewrite`` take a VW binary model apart and put it back with
VW's header checksum recomputed; ``vw_scores`` is VW's own per-action prediction
of a decision, the reference nba's costs are compared with.
"""

from __future__ import annotations

import struct

import numpy as np

from benchmarks.workloads import vw_json, vw_text
from nba._core.hashing import murmurhash3_32


def split_header(data: bytes) -> tuple[dict, bytes]:
    """The header fields of a VW model and the bytes after the header."""
    o = 0

    def take(n: int) -> bytes:
        nonlocal o
        chunk = data[o : o + n]
        o += n
        return chunk

    def u32() -> int:
        return struct.unpack("<I", take(4))[0]

    f: dict = {}
    f["version"] = take(u32())
    f["id"] = take(u32())
    f["marker"] = take(1)
    f["labels"] = take(8)
    f["bits"] = u32()
    f["lda"] = u32()
    f["ngram"] = [take(3) for _ in range(u32())]
    f["skips"] = [take(3) for _ in range(u32())]
    f["options"] = take(u32())
    assert u32() == 4
    f["checksum"] = u32()
    return f, data[o:]


def join_header(f: dict, body: bytes) -> bytes:
    """Reassemble a header with VW's chained murmur3 checksum (one link per non-empty read)."""
    reads = [
        struct.pack("<I", len(f["id"])), f["id"], f["marker"], f["labels"][:4], f["labels"][4:],
        struct.pack("<I", f["bits"]), struct.pack("<I", f["lda"]), struct.pack("<I", len(f["ngram"])), *f["ngram"],
        struct.pack("<I", len(f["skips"])), *f["skips"], struct.pack("<I", len(f["options"])), f["options"],
    ]
    h = 0
    for chunk in reads:
        if chunk:
            h = murmurhash3_32(chunk, h)
    head = struct.pack("<I", len(f["version"])) + f["version"] + b"".join(reads)
    return head + struct.pack("<II", 4, h) + body


def rewrite(data: bytes, **changes) -> bytes:
    f, body = split_header(data)
    f.update(changes)
    return join_header(f, body)


def vw_scores(vw, shared: dict, actions: list[dict], fmt: str) -> np.ndarray:
    """VW's raw per-action predictions (partial predictions of the action examples)."""
    exs = vw.parse(vw_json(shared, actions) if fmt == "json" else vw_text(shared, actions))
    try:
        vw.predict(exs)
        return np.array([e.get_partial_prediction() for e in exs[1:]])
    finally:
        vw.finish_example(exs)
