"""Exec through CRI: ExecSync (output, exit code, timeout) and the streaming server's exec and
attach, one round trip of stdin to stdout over its WebSocket protocol."""

from __future__ import annotations

from crisupport import Pod, poll

from epollshim.tools import cri_api as c
from epollshim.tools.cri import CriError
from epollshim.tools.k8s_stream import STDIN, STDOUT, StreamSession

LOOP = ["sh", "-c", "while :; do sleep 86400 & wait $!; done"]


def test_exec_sync_returns_output_and_exit_code(pod: Pod) -> None:
    cid = pod.run("target", LOOP)
    r = pod.client.exec_sync(cid, ["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r.exit_code, r.stdout, r.stderr) == (7, b"out\n", b"err\n")
    assert pod.client.exec_sync(cid, ["true"]).exit_code == 0


def test_exec_sync_timeout_kills_the_exec(pod: Pod) -> None:
    cid = pod.run("target", LOOP)
    try:
        r = pod.client.exec_sync(cid, ["sh", "-c", "echo $$ >/tmp/pid; exec sleep 86402"], 2)
        raise AssertionError(f"ExecSync returned {r} instead of timing out")
    except CriError as e:
        assert e.code == "DEADLINE_EXCEEDED" and "timeout" in e.details
    pid = pod.client.exec_sync(cid, ["cat", "/tmp/pid"]).stdout.decode().strip()
    assert pid.isdigit(), "the exec never ran"
    poll(
        f"exec pid {pid} to be gone",
        lambda: pod.client.exec_sync(cid, ["kill", "-0", pid]).exit_code != 0,
    )
    assert b"sleep 86402" not in pod.client.exec_sync(cid, ["ps"]).stdout


def test_exec_stream_round_trip(pod: Pod) -> None:
    cid = pod.run("target", LOOP)
    command = ["sh", "-c", "read line; echo got:$line; echo err:$line >&2; exit 5"]
    request = c.ExecRequest(cid, command, stdin=True, stdout=True, stderr=True)
    url = pod.client.exec(request)
    assert url.startswith("http://127.0.0.1:")
    with StreamSession(url) as session:
        assert session.wait_ready() == STDOUT
        session.send(STDIN, b"ping\n")
        seen, status = session.read_to_end()
    assert (seen.get(1), seen.get(2)) == (b"got:ping\n", b"err:ping\n")
    assert status["status"] == "Failure"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "5"}]


def test_attach_stream_round_trip(pod: Pod) -> None:
    cid = pod.run("echoer", ["sh", "-c", "while read l; do echo echo:$l; done"], stdin=True)
    url = pod.client.attach(c.AttachRequest(cid, stdin=True, stdout=True, stderr=True))
    with StreamSession(url) as session:
        assert session.wait_ready() == STDOUT
        session.send(STDIN, b"hello\n")
        seen, _ = session.read_until(STDOUT, b"echo:hello\n")
    assert seen[STDOUT] == b"echo:hello\n"
    assert pod.wait_log("echoer", "echo:hello")[-1] == ("stdout", "F", "echo:hello")
