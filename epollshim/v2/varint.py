"""Protobuf varints, alone in a module so that ``delete`` can encode its reply
without importing the codec (``pb`` pulls in ``collections``: ~9 ms at every
container's end).

A negative value is 64-bit two's complement: always 10 bytes, 10 turns of the
loop. The few negative values that recur are kept once encoded, Go's zero time
above all (the ``exited_at`` seconds of every running process, in every
``State`` answer and in events): at most ``NEGATIVE_KEPT`` of them, the first
ones seen, so the table never grows past that whatever a peer sends.
"""

MASK64 = (1 << 64) - 1
NEGATIVE_KEPT = 16

_negative: dict[int, bytes] = {}


def encode_varint(value: int) -> bytes:
    """Varint bytes of ``value``; negatives as 64-bit two's complement (10 bytes)."""
    if value < 0:
        kept = _negative.get(value)
        return kept if kept is not None else _encode_negative(value)
    value &= MASK64
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode_negative(value: int) -> bytes:
    data = encode_varint(value & MASK64)
    if len(_negative) < NEGATIVE_KEPT:
        _negative[value] = data
    return data
