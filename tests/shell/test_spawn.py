"""``spawn_quick`` (posix_spawn for runc calls) and ``find_program``, with real children."""

from __future__ import annotations

import os
import signal

import pytest

from epollshim.shell.process import SpawnError, find_program, spawn_quick
from epollshim.shell.signals import RESETTABLE


def run(argv: list[str], stdin: int | None = None) -> tuple[int, bytes]:
    """spawn_quick ``argv`` with a pipe as stdout and stderr; (wait status, output)."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        pid = spawn_quick(argv, stdio=(devnull if stdin is None else stdin, out_w, out_w), env={})
    finally:
        os.close(out_w)
        os.close(devnull)
    chunks = []
    while chunk := os.read(out_r, 65536):
        chunks.append(chunk)
    os.close(out_r)
    _, status = os.waitpid(pid, 0)
    return status, b"".join(chunks)


def status_fields(text: bytes) -> dict[str, str]:
    lines = text.decode().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def test_child_gets_default_signals_an_empty_mask_and_our_stdio() -> None:
    cat = find_program("cat")
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        status, out = run([cat, "/proc/self/status"])
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    assert os.waitstatus_to_exitcode(status) == 0
    fields = status_fields(out)
    # Python ignores SIGPIPE and SIGXFSZ; runc must not inherit that, nor our blocked set.
    # (glibc's own signals 32 and 33 are not ours to touch: whatever the caller had.)
    ours = sum(1 << (sig - 1) for sig in RESETTABLE)
    assert int(fields["SigIgn"], 16) & ours == 0
    assert int(fields["SigBlk"], 16) == 0


def test_stdio_may_be_our_own_0_1_2_in_any_order() -> None:
    r, w = os.pipe2(os.O_CLOEXEC)
    os.write(w, b"through fd 0\n")
    os.close(w)
    saved = os.dup(0)
    try:
        os.dup2(r, 0)  # the child's stdin is our fd 0: mapped onto itself
        status, out = run([find_program("cat")], stdin=0)
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(r)
    assert (os.waitstatus_to_exitcode(status), out) == (0, b"through fd 0\n")


def test_find_program_searches_path_once_like_execvp(tmp_path: os.PathLike[str]) -> None:
    d = os.fspath(tmp_path)
    plain = os.path.join(d, "tool")
    with open(plain, "w") as f:
        f.write("#!/bin/sh\n")
    assert find_program("tool", f"/nonexistent:{d}") == "tool"  # not executable: skipped
    os.chmod(plain, 0o755)
    assert find_program("tool", f"/nonexistent:{d}") == plain
    os.mkdir(os.path.join(d, "dir"))
    assert find_program("dir", d) == "dir"
    assert find_program("./relative/x", d) == "./relative/x"


def test_a_program_that_cannot_run_is_a_spawn_error() -> None:
    with pytest.raises(SpawnError, match="cannot execute /nonexistent/runc: No such file"):
        spawn_quick(["/nonexistent/runc"], stdio=(0, 1, 2), env={})
