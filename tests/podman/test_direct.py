"""Each monitor driven directly, as podman would, for what podman 4.3 does not pass by
default: ``--sync`` (no fork), ``--persist-dir``, ``--exit-delay``, the exit command's
arguments, the pipes' messages and a failing runc. Our busybox bundle, real runc; the test
deletes the runc container itself (podman's cleanup would)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from podmansupport import DEADLINE, MONITORS, require_podman

from epollshim.bundle import write_bundle


@pytest.fixture(params=sorted(MONITORS))
def monitor(request: pytest.FixtureRequest) -> str:
    require_podman()
    return MONITORS[request.param]()


@pytest.fixture
def cid() -> Iterator[str]:
    name = "epct-" + secrets.token_hex(6)
    yield name
    subprocess.run(["runc", "delete", "--force", name], capture_output=True, check=False)


def drive(monitor: str, argv: list[str], tmp: Path) -> tuple[int, list[dict[str, object]]]:
    """Run the monitor with a sync and a start pipe (fds 3 and 4, as podman gives them);
    its exit status and the sync pipe's messages."""
    sync_ours, sync_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    start_ours, start_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = {**os.environ, "_OCI_SYNCPIPE": "3", "_OCI_STARTPIPE": "4"}
    place = "import os,sys;os.dup2(int(sys.argv[1]),3);os.dup2(int(sys.argv[2]),4);"
    place += "os.execv(sys.argv[3],sys.argv[3:])"  # our ends at fds 3 and 4, then the monitor
    fds = (sync_theirs.fileno(), start_theirs.fileno())
    with open(tmp / "stderr", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", place, *map(str, fds), monitor, *argv],
            env=env,
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    sync_theirs.close()
    start_theirs.close()
    start_ours.send(b"\0")  # "you are in your cgroup": start
    try:
        code = proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    sync_ours.setblocking(False)
    messages = []
    while True:
        try:
            packet = sync_ours.recv(4096)
        except BlockingIOError:
            break
        if not packet:
            break
        messages.append(json.loads(packet))
    sync_ours.close()
    start_ours.close()
    return code, messages


def base_argv(cid: str, tmp: Path, bundle: Path) -> list[str]:
    (tmp / "exits").mkdir()
    (tmp / "persist").mkdir()
    return [
        "--api-version", "1", "-c", cid, "-u", cid, "-r", str(shutil.which("runc")),
        "-b", str(bundle), "-p", str(tmp / "pidfile"), "--exit-dir", str(tmp / "exits"),
        "--persist-dir", str(tmp / "persist"), "--full-attach",
        "-l", f"k8s-file:{tmp / 'ctr.log'}", "--log-level", "warning", "--sync",
    ]  # fmt: skip


def test_sync_mode_exit_files_and_exit_command(monitor: str, cid: str, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "bundle", ["sh", "-c", "echo hi; exit 3"])
    marker = tmp_path / "exit-command-ran"
    argv = [
        *base_argv(cid, tmp_path, bundle),
        "--exit-command", "/bin/sh", "--exit-command-arg", "-c",
        "--exit-command-arg", f'echo "$0 $*" > {marker}', "--exit-command-arg", "zero",
        "--exit-command-arg", "", "--exit-command-arg", "two", "--exit-delay", "1",
    ]  # fmt: skip
    # runc create only: nobody runs `runc start` here, so start it when the pid is known
    starter = subprocess.Popen(
        ["sh", "-c", f"while [ ! -s {tmp_path}/pidfile ]; do :; done; runc start {cid}"],
        stderr=subprocess.DEVNULL,
    )
    try:
        code, messages = drive(monitor, argv, tmp_path)
    finally:
        starter.wait(timeout=DEADLINE)
    pid = int((tmp_path / "pidfile").read_text())
    assert messages == [{"data": pid}], (tmp_path / "stderr").read_bytes()
    assert (tmp_path / "exits" / cid).read_text() == "3"
    assert (tmp_path / "persist" / "exit").read_text() == "3"
    assert marker.read_text() == "zero  two\n"  # "$0 $*": zero, then "" and two
    assert "stdout F hi" in (tmp_path / "ctr.log").read_text()
    assert code in (0, 3)  # ours exits 0, conmon with the container's status


def test_runc_failure_on_the_sync_pipe(monitor: str, cid: str, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "bundle", ["/no/such/program"])
    code, messages = drive(monitor, base_argv(cid, tmp_path, bundle), tmp_path)
    assert len(messages) == 1 and messages[0]["data"] == -1, messages
    assert "no such file or directory" in str(messages[0]["message"])
    assert not (tmp_path / "exits" / cid).exists()
    assert code != 0
