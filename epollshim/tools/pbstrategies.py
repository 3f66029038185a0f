"""Hypothesis strategies that draw any ``epollshim.v2.pb`` message, for the schema oracles.

Both oracle tests (``tests/v2``: containerd's messages, ``tests/cri``: the CRI's) check our
codec against Google's ``protobuf`` package on messages drawn here. The integer ranges are
written out again rather than taken from ``pb``: an oracle does not borrow the table it
checks. Needs hypothesis (the ``dev`` extra); never imported by a shim.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from epollshim.v2 import pb
from epollshim.v2.pb import Message

RANGES = {
    **dict.fromkeys((pb.INT32, pb.ENUM, pb.SINT32, pb.SFIXED32), (-(2**31), 2**31 - 1)),
    **dict.fromkeys((pb.INT64, pb.SINT64, pb.SFIXED64), (-(2**63), 2**63 - 1)),
    **dict.fromkeys((pb.UINT32, pb.FIXED32), (0, 2**32 - 1)),
    **dict.fromkeys((pb.UINT64, pb.FIXED64), (0, 2**64 - 1)),
}


ASCII = st.characters(max_codepoint=127)
# The codec's short paths end at 128 bytes of string and at 2**31 (one-byte lengths and
# values, int32): values on both sides of those edges are drawn often.
EDGE_LENGTHS = (127, 128)
EDGE_INTEGERS = (127, 128, 2**31 - 1, 2**31)


def scalar(kind: str, size: int) -> st.SearchStrategy[Any]:
    """A value of a scalar ``kind``: strings and bytes up to ``size`` long or just around 128,
    integers over their whole range with the edges (0, 1, -1, the least and the greatest,
    and those of ``EDGE_INTEGERS`` in range) drawn often."""
    if kind == pb.STRING:
        around = [st.text(ASCII, min_size=n, max_size=n) for n in EDGE_LENGTHS]
        return st.one_of(st.text(max_size=size), *around, st.text(min_size=126, max_size=128))
    if kind == pb.BYTES:
        return st.one_of(st.binary(max_size=size), st.binary(min_size=127, max_size=128))
    if kind == pb.BOOL:
        return st.booleans()
    lo, hi = RANGES[kind]
    edges = (0, 1, lo, hi, -1 if lo else hi, *(n for n in EDGE_INTEGERS if lo <= n <= hi))
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def message(cls: type[Message], size: int = 3) -> st.SearchStrategy[Message]:
    """A ``cls`` with every field drawn: repeated fields and maps of up to ``size`` items,
    message fields unset or set, strings and bytes up to ``4 * size`` long."""
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for f in cls.FIELDS:
        one = message(f.msg, size) if f.msg else scalar(f.kind, 4 * size)
        if f.key is not None:
            parts[f.name] = st.dictionaries(scalar(f.key, 4 * size), one, max_size=size)
        elif f.repeated:
            parts[f.name] = st.lists(one, max_size=size)
        elif f.msg:
            parts[f.name] = st.none() | one
        else:
            parts[f.name] = one
    return st.builds(cls, **parts)
