"""conmon's command line as podman writes it, and what we refuse (by name, never silently)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from podmansupport import PrivatePodman, our_monitor, run_args

from epollshim.conmon.options import UsageError, parse, runc_log

CID = "c" * 64


def podman_create_argv(tmp: Path) -> list[str]:
    """``run -d``'s monitor command line, as observed here (spec: conmon-podman.md)."""
    ud = str(tmp / "userdata")
    return [
        "--api-version", "1", "-c", CID, "-u", CID, "-r", "/usr/bin/runc", "-b", ud,
        "-p", f"{ud}/pidfile", "-n", "name", "--exit-dir", str(tmp / "exits"),
        "--full-attach", "-l", f"k8s-file:{ud}/ctr.log", "--log-level", "warning",
        "--runtime-arg", "--log-format=json", "--runtime-arg", "--log",
        f"--runtime-arg={ud}/oci-log", "--conmon-pidfile", f"{ud}/conmon.pid",
        "--exit-command", "/usr/bin/podman", "--exit-command-arg", "--root",
        "--exit-command-arg", "", "--exit-command-arg", "container",
        "--exit-command-arg", "cleanup", "--exit-command-arg", CID,
    ]  # fmt: skip


def test_podmans_create_command_line(tmp_path: Path) -> None:
    o = parse(podman_create_argv(tmp_path))
    assert (o.api_version, o.cid, o.cuuid, o.name, o.full_attach) == (True, CID, CID, "name", True)
    assert o.k8s_log == f"{tmp_path}/userdata/ctr.log"
    assert o.exit_args == ["--root", "", "container", "cleanup", CID]
    assert o.runtime_args == ["--log-format=json", "--log", f"{tmp_path}/userdata/oci-log"]
    assert runc_log(o.runtime_args, "default") == (f"{tmp_path}/userdata/oci-log", [])
    assert not (o.exec or o.terminal or o.stdin)


def test_short_and_long_forms(tmp_path: Path) -> None:
    argv = [*podman_create_argv(tmp_path), "-t", "-i", "--timeout=5", f"-P{tmp_path}/p"]
    o = parse(argv)
    assert (o.terminal, o.stdin, o.timeout, o.conmon_pidfile) == (True, True, 5, f"{tmp_path}/p")


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--restore", "/x"], "--restore"),
        (["--sdnotify-socket=/run/notify"], "--sdnotify-socket"),
        (["--seccomp-notify-socket", "/s"], "--seccomp-notify-socket"),
        (["--replace-listen-pid"], "--replace-listen-pid"),
        (["--bogus"], "--bogus"),
        (["-l", "journald:"], "journald"),
        (["-l", "passthrough"], "passthrough"),
        (["--log-tag", "t"], "--log-tag"),
        (["stray"], "'stray'"),
        (["--timeout", "x"], "--timeout"),
    ],
)
def test_refused_by_name(tmp_path: Path, extra: list[str], named: str) -> None:
    with pytest.raises(UsageError, match=named.replace("-", r"\-")):
        parse(podman_create_argv(tmp_path) + extra)


def test_conmons_own_checks(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="Use --cid"):
        parse(["-u", "x", "-r", "/usr/bin/runc", "-l", "none"])
    with pytest.raises(UsageError, match="Use --exec-process-spec"):
        parse([*podman_create_argv(tmp_path), "-e"])
    with pytest.raises(UsageError, match="Runtime path /nope is not valid"):
        parse([*podman_create_argv(tmp_path), "-r", "/nope"])
    with pytest.raises(UsageError, match="--full-attach"):
        parse([a for a in podman_create_argv(tmp_path) if a != "--full-attach"])


def test_log_drivers(tmp_path: Path) -> None:
    base = [a for a in podman_create_argv(tmp_path) if not a.startswith("k8s-file:")]
    base.remove("-l")
    assert parse([*base, "-l", "none"]).k8s_log == ""
    assert parse([*base, "-l", "/p/log"]).k8s_log == "/p/log"
    assert parse([*base, "-l", ":/p/log", "-l", "none"]).k8s_log == "/p/log"
    with pytest.raises(UsageError, match="No such log driver json-file"):
        parse([*base, "-l", "json-file:/x"])


def test_bad_option_without_a_sync_pipe_is_one_stderr_line() -> None:
    if not os.access(our_monitor(), os.X_OK):
        pytest.skip(f"missing {our_monitor()} (run `make dev`)")
    r = subprocess.run([our_monitor(), "--bogus"], capture_output=True, text=True, check=False)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "epollshim-conmon: unknown option --bogus\n"


def test_podman_shows_a_refused_log_driver(store: PrivatePodman) -> None:
    # (podman itself refuses journald on this machine: there is no journal)
    driver = "passthrough"
    store.monitor = our_monitor()
    try:
        r = store(*run_args("true", opts=("--rm", "--log-driver", driver)))
    finally:
        store.remove_all()
    assert r.returncode != 0
    assert f"epollshim-conmon: --log-path {driver}: the {driver} log driver".encode() in r.stderr


def test_syslog_sink(tmp_path: Path) -> None:
    import socket

    from epollshim.conmon.main import syslog_fd

    assert syslog_fd(str(tmp_path / "no-syslog")) == -1
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "log"))
    fd = syslog_fd(str(tmp_path / "log"))
    try:
        os.write(fd, b"epollshim: warn: hello\n")
        assert server.recv(100) == b"epollshim: warn: hello\n"
    finally:
        os.close(fd)
        server.close()


def test_trace_states_through_a_wrapper(store: PrivatePodman, tmp_path: Path) -> None:
    import json

    wrapper = tmp_path / "monitor"
    wrapper.write_text(f'#!/bin/sh\nexec {our_monitor()} --trace-states=json "$@"\n')
    wrapper.chmod(0o755)
    store.monitor = str(wrapper)
    try:
        r = store(*run_args("sh", "-c", "exit 2", opts=("--rm",)))
    finally:
        store.remove_all()
    assert r.returncode == 2, r.stderr
    records = [json.loads(line) for line in r.stderr.splitlines() if line.startswith(b"{")]
    assert [(t["name"], t["from"], t["to"]) for t in records] == [
        ("init", "STARTING", "RUNNING"),
        ("init", "RUNNING", "REAPING"),
        ("init", "REAPING", "CLEANUP"),
    ]
