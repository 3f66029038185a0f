"""``podman exec``: exit code, stdout and stderr apart, piped stdin; on each monitor."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from podmansupport import PrivatePodman, run_args


@pytest.fixture
def running(podman: PrivatePodman) -> Iterator[str]:
    """A container that runs until the test ends (removed by the ``podman`` fixture)."""
    yield podman.ok(*run_args("sleep", "1000", opts=("-d",))).strip()


@pytest.mark.parametrize("code", [0, 4])
def test_exec_exit_code_and_streams(podman: PrivatePodman, running: str, code: int) -> None:
    r = podman("exec", running, "sh", "-c", f"echo out; echo err >&2; exit {code}")
    assert (r.returncode, r.stdout, r.stderr) == (code, b"out\n", b"err\n")


def test_exec_stdin(podman: PrivatePodman, running: str) -> None:
    data = b"".join(b"line %d\n" % i for i in range(5000))
    r = podman("exec", "-i", running, "cat", input=data)
    assert (r.returncode, r.stderr) == (0, b"")
    assert r.stdout == data


def test_exec_without_stdin_reads_eof(podman: PrivatePodman, running: str) -> None:
    r = podman("exec", running, "sh", "-c", "cat; echo done")
    assert (r.returncode, r.stdout) == (0, b"done\n")


def test_exec_detached(podman: PrivatePodman, running: str) -> None:
    podman.ok("exec", "-d", running, "sh", "-c", "echo hi > /from-exec")
    r = podman("exec", running, "sh", "-c", "while [ ! -s /from-exec ]; do :; done; cat /from-exec")
    assert (r.returncode, r.stdout) == (0, b"hi\n")


def test_exec_missing_program(podman: PrivatePodman, running: str) -> None:
    r = podman("exec", running, "/no/such/program")
    assert r.returncode == 127, r.stderr
    assert b"no such file or directory" in r.stderr.lower()
