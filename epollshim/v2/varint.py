"""Protobuf varints, alone in a module so that ``delete`` can encode its reply
without importing the codec (``pb`` pulls in ``collections``: ~9 ms at every
container's end)."""

MASK64 = (1 << 64) - 1


def encode_varint(value: int) -> bytes:
    """Varint bytes of ``value``; negatives as 64-bit two's complement (10 bytes)."""
    value &= MASK64
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
