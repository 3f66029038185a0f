"""``podman run``, ``logs``, ``wait``, ``stop``, ``kill``, ``rm``, ``ps``, ``restart``.

Every test runs twice (``podman`` fixture): on our ``epollshim-conmon`` and on Debian's
conmon; a test that passes with conmon and fails with ours is a difference of ours.
"""

from __future__ import annotations

import os
import signal
import subprocess

from podmansupport import PrivatePodman, k8s_lines, poll, run_args


def state(podman: PrivatePodman, cid: str) -> str:
    return podman.ok("inspect", "--format", "{{.State.Status}}", cid).strip()


def exited(podman: PrivatePodman, cid: str) -> bool:
    return state(podman, cid) == "exited"


def start(podman: PrivatePodman, *args: str, opts: tuple[str, ...] = ()) -> str:
    """``run -d``: the container's id once it runs."""
    return podman.ok(*run_args(*args, opts=("-d", *opts))).strip()


def events(podman: PrivatePodman, cid: str) -> list[str]:
    out = podman.ok(
        "events", "--stream=false", "--filter", f"container={cid}", "--format", "{{.Status}}"
    )
    return out.split()


def test_run_rm_output_and_exit_code(podman: PrivatePodman) -> None:
    r = podman(*run_args("sh", "-c", "echo hi; echo err >&2; exit 3", opts=("--rm",)))
    assert r.returncode == 3, r.stderr
    assert r.stdout == b"hi\n"
    assert b"err\n" in r.stderr
    assert podman.container_ids() == []


def test_exit_command_removes_a_detached_rm_container(podman: PrivatePodman) -> None:
    # Nobody but the monitor's --exit-command (podman container cleanup --rm) removes it.
    cid = start(podman, "sh", "-c", "exit 3", opts=("--rm",))
    poll("the container removed", lambda: cid not in podman.container_ids())
    assert {"died", "remove"} <= set(events(podman, cid))


def test_output_is_not_lost(podman: PrivatePodman) -> None:
    r = podman(*run_args("seq", "1", "200000", opts=("--rm",)))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "".join(f"{i}\n" for i in range(1, 200001)).encode()


def test_logs_k8s_file(podman: PrivatePodman) -> None:
    cid = start(podman, "sh", "-c", "echo out; echo err >&2; printf nonl")
    assert podman.ok("wait", cid).strip() == "0"
    r = podman("logs", cid)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"out\nnonl", b"err\n")
    path = podman.ok("inspect", "--format", "{{.HostConfig.LogConfig.Path}}", cid).strip()
    with open(path) as f:
        lines = k8s_lines(f.read())
    assert [line for line in lines if line[0] == "stdout"] == [
        ("stdout", "F", "out"),
        ("stdout", "P", "nonl"),
    ]
    assert [line for line in lines if line[0] == "stderr"] == [("stderr", "F", "err")]


def test_logs_follow(podman: PrivatePodman) -> None:
    script = "echo first; while [ ! -e /go ]; do sleep 0.05; done; echo second"
    cid = start(podman, "sh", "-c", script)
    follow = subprocess.Popen(podman.argv("logs", "-f", cid), stdout=subprocess.PIPE)
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == b"first\n"
        podman.ok("exec", cid, "touch", "/go")
        out, _ = follow.communicate(timeout=60)  # ends when the container exits
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert out == b"second\n"
    assert follow.returncode == 0


def test_wait_and_ps(podman: PrivatePodman) -> None:
    cid = start(podman, "sh", "-c", "while [ ! -e /go ]; do sleep 0.05; done; exit 7")
    now = state(podman, cid)
    assert now == "running", now
    running = podman.ok("ps", "--no-trunc", "--format", "{{.ID}} {{.Status}}").splitlines()
    assert len(running) == 1 and running[0].startswith(f"{cid} Up "), running
    podman.ok("exec", cid, "touch", "/go")
    code = podman.ok("wait", cid).strip()
    assert code == "7", code
    now = state(podman, cid)
    assert now == "exited", now
    listed = podman.ok("ps", "-a", "--format", "{{.Status}}")
    assert "Exited (7)" in listed, listed
    listed = podman.ok("ps", "--format", "{{.ID}}")
    assert listed == "", listed


def test_stop_sigterm_then_sigkill(podman: PrivatePodman) -> None:
    # sh as the container's init ignores SIGTERM (no handler): stop kills it after -t.
    cid = start(podman, "sleep", "1000")
    podman.ok("stop", "-t", "1", cid)
    assert exited(podman, cid)
    assert podman.ok("inspect", "--format", "{{.State.ExitCode}}", cid).strip() == "137"


def test_stop_with_a_handler(podman: PrivatePodman) -> None:
    cid = start(podman, "sh", "-c", "trap 'exit 9' TERM; echo ready; sleep 1000 & wait")
    poll("ready", lambda: podman.ok("logs", cid) == "ready\n")
    podman.ok("stop", "-t", "30", cid)
    assert podman.ok("inspect", "--format", "{{.State.ExitCode}}", cid).strip() == "9"


def test_kill_signal(podman: PrivatePodman) -> None:
    script = "trap 'echo got-usr1; exit 10' USR1; echo ready; sleep 1000 & wait"
    cid = start(podman, "sh", "-c", script)
    poll("ready", lambda: podman.ok("logs", cid) == "ready\n")
    podman.ok("kill", "-s", "USR1", cid)
    assert podman.ok("wait", cid).strip() == "10"
    assert podman.ok("logs", cid) == "ready\ngot-usr1\n"


def test_rm_force_a_running_container(podman: PrivatePodman) -> None:
    cid = start(podman, "sleep", "1000")
    monitors = podman.monitor_pids()
    assert len(monitors) == 1
    podman.ok("rm", "-f", "-t", "0", cid)
    assert podman.container_ids() == []
    poll("the monitor to end", lambda: podman.monitor_pids() == [])


def test_killed_from_outside_is_137(podman: PrivatePodman) -> None:
    cid = start(podman, "sleep", "1000")
    pid = int(podman.ok("inspect", "--format", "{{.State.Pid}}", cid))
    os.kill(pid, signal.SIGKILL)
    assert podman.ok("wait", cid).strip() == "137"
    assert "Exited (137)" in podman.ok("ps", "-a", "--format", "{{.Status}}")


def test_container_cleanup(podman: PrivatePodman) -> None:
    cid = start(podman, "true")
    assert podman.ok("wait", cid).strip() == "0"
    poll("cleanup by the exit command", lambda: "cleanup" in events(podman, cid))
    podman.ok("container", "cleanup", cid)  # again, by hand: nothing left to do, no error


def test_restart(podman: PrivatePodman) -> None:
    cid = start(podman, "sh", "-c", "echo started; sleep 1000")
    poll("first start", lambda: podman.ok("logs", cid) == "started\n")
    first = podman.monitor_pids()
    podman.ok("restart", "-t", "0", cid)
    assert state(podman, cid) == "running"
    poll("second start", lambda: podman.ok("logs", cid) == "started\nstarted\n")
    assert podman.monitor_pids() != first


def test_runtime_failure_is_reported(podman: PrivatePodman) -> None:
    r = podman(*run_args("/no/such/program", opts=("--rm",)))
    assert r.returncode == 127, r.stderr
    assert b"no such file or directory" in r.stderr.lower()
    poll("the failed container removed", lambda: podman.container_ids() == [])


def test_timeout(podman: PrivatePodman) -> None:
    # --timeout: the monitor kills the process; conmon's exit status is then -1 (255)
    r = podman(
        *run_args(
            "sh", "-c", "echo before; sleep 1000; echo after", opts=("--rm", "--timeout", "1")
        )
    )
    assert (r.returncode, r.stdout) == (255, b"before\n")


def test_log_size_max(podman: PrivatePodman) -> None:
    # the file is started afresh before a line would take it past the maximum
    cid = start(podman, "sh", "-c", "seq 1 2000; echo done >&2", opts=("--log-opt", "max-size=2kb"))
    assert podman.ok("wait", cid).strip() == "0"
    path = podman.ok("inspect", "--format", "{{.HostConfig.LogConfig.Path}}", cid).strip()
    size = os.path.getsize(path)
    assert 0 < size <= 2000
    with open(path) as f:
        lines = k8s_lines(f.read())
    assert lines[-1] == ("stderr", "F", "done") or ("stdout", "F", "2000") in lines[-2:]
