"""``ctr task exec`` through the runtime v2 shim: pipes, piped stdin, a terminal, detached."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from v2support import (
    DEADLINE,
    RUNTIMES,
    Terminal,
    alive,
    check,
    detached,
    deterministic_bytes,
    nothing_left,
    poll,
    remove,
    run_detached,
    sha,
    tasks,
)

from epollshim.tools.containerd import PrivateContainerd

pytestmark = pytest.mark.containerd


@pytest.fixture(autouse=True)
def _nothing_left(containerd: PrivateContainerd) -> Iterator[None]:
    yield from nothing_left(containerd)


def pids(ctd: PrivateContainerd, cid: str) -> list[int]:
    """``ctr task ps``: the pids of the task's processes."""
    out = check(ctd.ctr("task", "ps", cid)).stdout.splitlines()[1:]
    return [int(line.split()[0]) for line in out if line.strip()]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_output_and_exit_code(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    with detached(containerd, runtime, unique_id, "sleep", "600"):
        r = containerd.ctr(
            "task", "exec", "--exec-id", "e1", unique_id,
            "sh", "-c", "echo to-out; echo to-err >&2; exit 5",
        )  # fmt: skip
        assert (r.returncode, r.stdout, r.stderr) == (5, "to-out\n", "to-err\n"), r.stderr
        # the exec id is free again once ctr deleted the exec
        r = containerd.ctr("task", "exec", "--exec-id", "e1", unique_id, "true")
        assert (r.returncode, r.stderr) == (0, "")
        assert tasks(containerd)[unique_id][1] == "RUNNING"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_stdin_round_trip(containerd: PrivateContainerd, unique_id: str, runtime: str) -> None:
    """Piped stdin reaches the process byte for byte; its EOF ends ``cat`` (CloseIO)."""
    data = deterministic_bytes((1 << 20) + 777, b"stdin")
    with detached(containerd, runtime, unique_id, "sleep", "600"):
        r = containerd.ctr(
            "task", "exec", "--exec-id", "cat", unique_id, "sh", "-c", "cat; exit 9",
            input=data, text=False, timeout=DEADLINE * 2,
        )  # fmt: skip
        assert (r.returncode, r.stderr) == (9, b""), r.stderr
        assert sha(r.stdout) == sha(data)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_tty_resize_and_exit_code(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    with detached(containerd, runtime, unique_id, "sleep", "600"):
        argv = [
            "ctr", "--address", containerd.address, "--namespace", containerd.namespace,
            "task", "exec", "-t", "--exec-id", "tty", unique_id, "sh",
        ]  # fmt: skip
        with Terminal(argv, rows=40, cols=132) as term:
            term.type("echo READY-$((40+2))\r")
            term.expect(rb"READY-42")
            assert term.size_after((40, 132)) == (40, 132)
            term.resize(33, 77)
            assert term.size_after((33, 77)) == (33, 77)
            term.type("exit 4\r")
            assert term.exit_status() == 4
        assert tasks(containerd)[unique_id][1] == "RUNNING"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_detached_then_killed(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    with detached(containerd, runtime, unique_id, "sleep", "600") as init:
        check(containerd.ctr("task", "exec", "-d", "--exec-id", "bg", unique_id, "sleep", "500"))
        both = poll(
            "the exec in ctr task ps", lambda: len(p := pids(containerd, unique_id)) == 2 and p
        )
        (exec_pid,) = set(both) - {init}
        assert alive(exec_pid)
        check(containerd.ctr("task", "kill", "--exec-id", "bg", "-s", "SIGKILL", unique_id))
        poll(f"exec pid {exec_pid} to end", lambda: not alive(exec_pid))
        poll("ctr task ps without the exec", lambda: pids(containerd, unique_id) == [init])
        assert tasks(containerd)[unique_id] == (init, "RUNNING")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_quick_execs_report_their_codes(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    """Processes that end at once (before their pid file is read, often) keep their codes."""
    with detached(containerd, runtime, unique_id, "sleep", "600"):
        for n in range(30):  # a lost exit showed up about once in 100 execs
            argv = ("task", "exec", "--exec-id", f"q{n}", unique_id, "sh", "-c", f"exit {n}")
            try:
                r = containerd.ctr(*argv, timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                pytest.fail(f"exec q{n} never ended (no exit reported)\n{containerd.log_tail()}")
            assert (r.returncode, r.stdout, r.stderr) == (n, "", ""), r.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_concurrent_execs_keep_their_streams_apart(
    containerd: PrivateContainerd, unique_id: str, runtime: str
) -> None:
    """Four execs at once, each with its own stdout, stderr and exit code."""
    run_detached(containerd, runtime, unique_id, "sleep", "600")
    argv = ["ctr", "--address", containerd.address, "--namespace", containerd.namespace]
    procs: dict[int, subprocess.Popen[bytes]] = {}
    try:
        for n in range(1, 5):
            script = f"seq {n} 4 60000; seq {n} 7 20000 >&2; exit {n + 10}"
            exec_argv = [*argv, "task", "exec", "--exec-id", f"c{n}", unique_id, "sh", "-c"]
            procs[n] = subprocess.Popen(
                [*exec_argv, script],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        for n, proc in procs.items():
            out, err = proc.communicate(timeout=DEADLINE * 2)
            want_out = "".join(f"{i}\n" for i in range(n, 60001, 4)).encode()
            want_err = "".join(f"{i}\n" for i in range(n, 20001, 7)).encode()
            assert proc.returncode == n + 10, err[-500:]
            assert (sha(out), sha(err)) == (sha(want_out), sha(want_err))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        remove(containerd, unique_id)
