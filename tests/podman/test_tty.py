"""Terminals and attach: ``run -it``, ``exec -it`` (resize followed), ``run -i`` with piped
stdin, detaching with the detach keys and ``podman attach``; on each monitor.

The container's shell is ``sh -c`` with a ``read`` loop, not an interactive ash: that one
asks the terminal for the cursor position and waits for an answer no test terminal gives.
What we type is echoed by the container's pty, so every expected line is one the echo
cannot contain (``got-X`` for a typed ``X``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from podmansupport import PrivatePodman, Terminal, poll, run_args

from epollshim.tools.procfs import EPOLLET, ptmx_registrations

ECHO_LOOP = 'stty size; while read l; do [ "$l" = q ] && exit 5; echo "got-$l"; stty size; done'


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    made: list[Terminal] = []
    try:
        yield made
    finally:
        for term in made:
            term.close()


def spawn(terminals: list[Terminal], argv: list[str], rows: int = 24, cols: int = 80) -> Terminal:
    term = Terminal(argv, rows, cols)
    terminals.append(term)
    return term


def resize_is_followed(term: Terminal) -> None:
    """Resize our terminal; type lines until the container's ``stty size`` says so."""
    term.resize(30, 100)
    for i in range(200):  # each round trip is bounded by expect's deadline
        term.type(f"r{i}\n".encode())
        term.expect(f"got-r{i}".encode())
        if term.seen.rstrip().endswith(b"30 100"):
            return
        term.expect(b"\n", 5)
    raise AssertionError(f"size never became 30 100: {term.seen[-200:]!r}")


def test_run_it(podman: PrivatePodman, terminals: list[Terminal]) -> None:
    term = spawn(terminals, podman.argv(*run_args("sh", "-c", ECHO_LOOP, opts=("--rm", "-it"))))
    term.expect(b"24 80\r\n")
    term.type(b"hello\n")
    term.expect(b"got-hello\r\n")  # ONLCR: \n comes out as \r\n
    resize_is_followed(term)
    term.type(b"q\n")
    assert term.exit_status() == 5
    poll("the container removed", lambda: podman.container_ids() == [])


def test_exec_it(podman: PrivatePodman, terminals: list[Terminal]) -> None:
    cid = podman.ok(*run_args("sleep", "1000", opts=("-d",))).strip()
    term = spawn(terminals, podman.argv("exec", "-it", cid, "sh", "-c", ECHO_LOOP), 20, 60)
    term.expect(b"20 60\r\n")
    term.type(b"x\n")
    term.expect(b"got-x\r\n")
    resize_is_followed(term)
    term.type(b"q\n")
    assert term.exit_status() == 5


def test_run_i_piped_stdin(podman: PrivatePodman) -> None:
    data = b"".join(b"%d\n" % i for i in range(20000))
    r = podman(*run_args("sh", "-c", "cat; echo end >&2", opts=("--rm", "-i")), input=data)
    assert (r.returncode, r.stdout, r.stderr) == (0, data, b"end\n")


def test_detach_and_attach(podman: PrivatePodman, terminals: list[Terminal]) -> None:
    # One detach key: podman sees a key sequence only when each key comes in a read of its
    # own, and a test cannot know when podman read the first (a pty delivers asynchronously).
    loop = 'while read l; do echo "got-$l"; done; exit 4'
    opts = ("-it", "--name", "dt", "--detach-keys", "ctrl-x")
    term = spawn(terminals, podman.argv(*run_args("sh", "-c", loop, opts=opts)))
    term.type(b"a\n")
    term.expect(b"got-a\r\n")  # podman read everything typed so far
    term.type(b"\x18")  # ctrl-x alone: detach
    assert term.exit_status() == 0
    assert podman.ok("inspect", "--format", "{{.State.Status}}", "dt").strip() == "running"
    again = spawn(terminals, podman.argv("attach", "--detach-keys", "ctrl-x", "dt"))
    again.type(b"b\n")
    again.expect(b"got-b\r\n")
    again.type(b"\x04")  # ^D: read ends, the container exits 4
    again.exit_status()
    assert podman.ok("wait", "dt").strip() == "4"


def test_run_it_the_monitor_waits_on_the_pty_master_edge_triggered(
    podman: PrivatePodman, terminals: list[Terminal], request: pytest.FixtureRequest
) -> None:
    """Level-triggered, every wait of the loop would poll the master again, and n_tty's poll
    waits for the tty's buffer worker when the container writes (shell/loop.py)."""
    if request.node.callspec.params["podman"] != "epollshim":
        pytest.skip("conmon waits with glib's poll(2): no epoll registration to look at")
    term = spawn(terminals, podman.argv(*run_args("sh", "-c", ECHO_LOOP, opts=("--rm", "-it"))))
    term.expect(b"24 80\r\n")
    monitors = podman.monitor_pids()
    flags = [f for pid in monitors for f in ptmx_registrations(pid)]
    term.type(b"q\n")
    assert term.exit_status() == 5
    assert len(monitors) == 1 and flags and all(f & EPOLLET for f in flags), flags
