"""Every exit code and every signal, as Linux encodes the wait status, against os as oracle.

Linux (and glibc's W* macros): an exit puts the code in bits 8..15 and 0 in
bits 0..6; a death by signal puts the signal in bits 0..6 and the core-dump
flag in bit 7; a stop is 0x7f with the stop signal in bits 8..15; a continue
is 0xffff. ``os`` is allowed here, never in the core.
"""

import os

import pytest

from epollshim.core.exitcode import from_wait_status

SIGNALS = range(1, 65)  # 1..31 standard, 32..64 real-time (SIGRTMAX is 64 on Linux)


def test_every_exit_code() -> None:
    for code in range(256):
        status = code << 8
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == code
        assert from_wait_status(status) == code, code
        assert from_wait_status(status) == os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("core_dump", [False, True], ids=["plain", "core"])
def test_every_signal(core_dump: bool) -> None:
    for sig in SIGNALS:
        status = sig | (0x80 if core_dump else 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == sig
        assert os.WCOREDUMP(status) == core_dump
        expected = min(128 + sig, 255)
        assert from_wait_status(status) == expected, sig
        assert from_wait_status(status) == 128 - os.waitstatus_to_exitcode(status)


def test_well_known_values() -> None:
    assert from_wait_status(9) == 137  # SIGKILL, what `docker kill` reports
    assert from_wait_status(15) == 143  # SIGTERM
    assert from_wait_status(11 | 0x80) == 139  # SIGSEGV with a core dump
    assert from_wait_status(1 << 8) == 1


def test_results_fit_in_a_byte() -> None:
    """Every status word the low 7 bits can encode as an exit or a signal stays in 0..255."""
    for low in range(0x7F):  # 0 = exited, 1..126 = signalled; 0x7f is a stop
        for high in (0, 1, 0x7F, 0xFF):
            status = (high << 8) | low if low == 0 else low
            assert 0 <= from_wait_status(status) <= 255


@pytest.mark.parametrize("status", [*((sig << 8) | 0x7F for sig in SIGNALS), 0xFFFF])
def test_stops_and_continues_are_not_exits(status: int) -> None:
    assert not os.WIFEXITED(status) and not os.WIFSIGNALED(status)
    with pytest.raises(ValueError, match="not an exit"):
        from_wait_status(status)
    with pytest.raises(ValueError):
        os.waitstatus_to_exitcode(status)
