"""The loop with real pipes: callbacks, back-pressure registration, timers, errors."""

import os
import pty
import selectors
from collections.abc import Callable

import pytest

from epollshim.shell.loop import Loop
from epollshim.tools.procfs import EPOLLET, epoll_registrations


@pytest.fixture
def pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def test_reader_called_with_data_and_loop_stops(pipe: tuple[int, int]) -> None:
    r, w = pipe
    loop = Loop()
    got = []

    def readable() -> None:
        got.append(os.read(r, 100))
        loop.stop()

    loop.add_reader(r, readable)
    os.write(w, b"hello")
    loop.run()
    assert got == [b"hello"]


def test_idle_loop_has_no_timeout() -> None:
    """No timers: select blocks without a timeout (an idle shim makes no system calls)."""
    loop = Loop()
    assert loop._timeout() is None
    timer = loop.call_later(100, lambda: None)
    assert loop._timeout() is not None
    timer.cancel()
    assert loop._timeout() is None


def test_timers_run_in_deadline_order_and_cancelled_ones_never() -> None:
    loop = Loop()
    order: list[str] = []
    loop.call_later(0.02, lambda: (order.append("late"), loop.stop()))
    loop.call_later(0.0, lambda: order.append("early"))
    loop.call_later(0.01, lambda: order.append("cancelled")).cancel()
    loop.run()
    assert order == ["early", "late"]


def test_removing_every_callback_unregisters_the_fd(pipe: tuple[int, int]) -> None:
    r, w = pipe
    loop = Loop()
    loop.add_reader(r, lambda: None)
    loop.add_writer(w, lambda: None)
    assert set(loop.selector.get_map()) == {r, w}
    loop.remove_writer(w)
    loop.forget(r)
    assert not loop.selector.get_map()
    assert not loop.callbacks


def test_an_fd_epoll_refuses_is_not_registered_and_can_be_forgotten(
    pipe: tuple[int, int], tmp_path: object
) -> None:
    """A regular file (the seed CLI's stdin from a file) gets EPERM from epoll: the loop
    must not believe it registered, so that ``forget`` and a later registration work."""
    r, _ = pipe
    loop = Loop()
    with open(os.path.join(str(tmp_path), "plain"), "wb") as f:
        with pytest.raises(PermissionError):
            loop.add_reader(f.fileno(), lambda: None)
        loop.forget(f.fileno())
        assert f.fileno() not in loop.selector.get_map()
        assert f.fileno() not in loop.callbacks
    loop.add_reader(r, lambda: None)
    loop.remove_writer(r)  # changes nothing: the read registration stays
    assert loop.selector.get_map()[r].events == selectors.EVENT_READ
    loop.forget(r)
    assert not loop.selector.get_map()


def test_a_failing_callback_ends_the_loop_without_on_error(pipe: tuple[int, int]) -> None:
    r, w = pipe
    loop = Loop()

    def boom() -> None:
        raise RuntimeError("boom")

    loop.add_reader(r, boom)
    os.write(w, b"x")
    with pytest.raises(RuntimeError, match="boom"):
        loop.run()


def test_on_error_reports_and_keeps_serving(pipe: tuple[int, int]) -> None:
    r, w = pipe
    errors: list[Exception] = []
    loop = Loop(on_error=errors.append)
    calls = []

    def flaky() -> None:
        calls.append(os.read(r, 1))
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        loop.stop()

    loop.add_reader(r, flaky)
    os.write(w, b"ab")
    loop.run()
    assert calls == [b"a", b"b"]
    assert [str(e) for e in errors] == ["first call fails"]


def _pipes(n: int) -> list[tuple[int, int]]:
    return [os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC) for _ in range(n)]


def _reader(order: list[str], name: str, r: int) -> Callable[[], None]:
    def readable() -> None:
        order.append(name)
        os.read(r, 1)

    return readable


def _close(pipes: list[tuple[int, int]]) -> None:
    for r, w in pipes:
        os.close(r)
        os.close(w)


def test_bulk_callbacks_run_after_the_others_of_their_batch() -> None:
    """A relay's chunk (bulk) waits for the calls that became ready with it, whatever
    order epoll reports them in (ready first, registered first: epoll's list order)."""
    pipes = _pipes(4)
    loop = Loop()
    order: list[str] = []
    try:
        for i, (r, w) in enumerate(pipes):
            os.write(w, b"x")
            bulk = i % 2 == 0
            name = f"{'bulk' if bulk else 'call'}{i}"
            loop.add_reader(r, _reader(order, name, r), bulk=bulk)
        loop._once()
    finally:
        loop.close()
        _close(pipes)
    assert order[:2] == sorted(order[:2]) == ["call1", "call3"]
    assert sorted(order[2:]) == ["bulk0", "bulk2"]


def test_a_bulk_writer_waits_too_and_bulk_ends_with_the_registration() -> None:
    (_, w1), (r2, w2) = pipes = _pipes(2)
    loop = Loop()
    order: list[str] = []
    try:
        loop.add_writer(w1, lambda: order.append("bulk writer"), bulk=True)
        os.write(w2, b"x")
        loop.add_reader(r2, _reader(order, "call", r2))
        loop._once()
        assert order == ["call", "bulk writer"]
        loop.remove_writer(w1)
        assert w1 not in loop.bulk  # the fd number may come back as a ttrpc connection
        loop.add_writer(w1, lambda: order.append("writer"))
        assert w1 not in loop.bulk
        order.clear()
        loop._once()
        assert order[0] == "writer"
    finally:
        loop.close()
        _close(pipes)


def test_a_bulk_callback_removed_earlier_in_its_batch_is_not_called() -> None:
    (r1, w1), (r2, w2) = pipes = _pipes(2)
    loop = Loop()
    order: list[str] = []

    def call() -> None:
        order.append("call")
        os.read(r2, 1)
        loop.remove_reader(r1)  # the relay was stopped (its process was deleted)

    try:
        os.write(w1, b"x")
        os.write(w2, b"x")
        loop.add_reader(r1, lambda: order.append("bulk"), bulk=True)
        loop.add_reader(r2, call)
        loop._once()
    finally:
        loop.close()
        _close(pipes)
    assert order == ["call"]


def _answering(order: list[str], name: str, r: int, loop: Loop) -> Callable[[], None]:
    """A ttrpc connection's callback: read a call (``_reader``), answer it (a peer woken)."""
    read = _reader(order, name, r)

    def readable() -> None:
        read()
        loop.woke_peer()

    return readable


@pytest.mark.parametrize("with_relay", [True, False])
def test_answers_yield_once_per_pass_before_bulk_work_and_only_with_a_relay(
    with_relay: bool,
) -> None:
    """The peers our answers woke get the CPU before a relay's next chunk: one yield for
    the whole batch of answers; none without a relay (shell/loop.py rules)."""
    pipes = _pipes(3)
    (r1, w1), (r2, w2), (r3, w3) = pipes
    loop = Loop()
    assert loop.sched_yield is os.sched_yield
    order: list[str] = []
    loop.sched_yield = lambda: order.append("yield")
    try:
        for w in (w1, w2, w3):
            os.write(w, b"x")
        loop.add_reader(r1, _answering(order, "call", r1, loop))
        loop.add_reader(r2, _answering(order, "call", r2, loop))
        if with_relay:
            loop.add_reader(r3, _reader(order, "relay", r3), bulk=True)
        else:
            loop.add_reader(r3, _reader(order, "other", r3))
        loop._once()
        if with_relay:
            assert order == ["call", "call", "yield", "relay"]
        else:
            assert sorted(order) == ["call", "call", "other"]
        order.clear()
        os.write(w3, b"x")
        loop._once()  # no answer in this pass: no yield
        assert order == (["relay"] if with_relay else ["other"])
    finally:
        loop.close()
        _close(pipes)


def test_an_answer_from_a_timer_yields_after_the_timers() -> None:
    """An answer sent by a timer (a resumed connection's held calls) yields before the next
    pass, whose bulk work would otherwise come first; a timer sending nothing does not."""
    ((r, _),) = pipes = _pipes(1)
    loop = Loop()
    order: list[str] = []
    loop.sched_yield = lambda: order.append("yield")
    try:
        loop.add_reader(r, _reader(order, "relay", r), bulk=True)
        loop.call_later(0, lambda: order.append("quiet timer"))
        loop._once()
        assert order == ["quiet timer"]
        loop.call_later(0, lambda: (order.append("answering timer"), loop.woke_peer()))
        loop._once()
        assert order == ["quiet timer", "answering timer", "yield"]
    finally:
        loop.close()
        _close(pipes)


def _epoll_flags(loop: Loop, fd: int) -> int:
    """The events word the kernel holds for ``fd`` in the loop's epoll (its fdinfo)."""
    registered = epoll_registrations(os.getpid(), loop.selector.fileno())
    assert fd in registered, f"fd {fd} is not in the loop's epoll"
    return registered[fd]


def _ready(loop: Loop) -> list[int]:
    return [key.fd for key, _ in loop.selector.select(0)]


def test_an_edge_fd_is_reported_once_per_wakeup_a_level_one_until_drained() -> None:
    (r1, w1), (r2, w2) = pipes = _pipes(2)
    loop = Loop()
    try:
        loop.add_reader(r1, lambda: None, edge=True, bulk=True)
        loop.add_reader(r2, lambda: None)
        assert _epoll_flags(loop, r1) & EPOLLET and not _epoll_flags(loop, r2) & EPOLLET
        os.write(w1, b"x")
        os.write(w2, b"x")
        assert sorted(_ready(loop)) == [r1, r2]
        assert _ready(loop) == [r2]  # nothing read: the level fd again, the edge fd not
        os.write(w1, b"y")  # a new wake-up: a new edge
        assert sorted(_ready(loop)) == [r1, r2]
    finally:
        loop.close()
        _close(pipes)


def test_edge_outlives_a_mask_change_and_ends_with_the_registration() -> None:
    """Edge is the fd's: a writer added without it keeps it (selectors would register the
    new mask level-triggered); unregistered, the fd number may come back as a connection."""
    master, slave = pty.openpty()
    loop = Loop()
    try:
        os.set_blocking(master, False)
        loop.add_reader(master, lambda: None, edge=True)
        loop.add_writer(master, lambda: None)
        assert _epoll_flags(loop, master) & EPOLLET
        assert _epoll_flags(loop, master) & 0x5 == 0x5  # EPOLLIN | EPOLLOUT
        loop.remove_writer(master)
        assert _epoll_flags(loop, master) & EPOLLET
        loop.remove_reader(master)
        assert master not in loop.edge and master not in loop.masks
        loop.add_reader(master, lambda: None)
        assert not _epoll_flags(loop, master) & EPOLLET
        loop.add_reader(master, lambda: None, edge=True)  # same mask, now edge: set anyway
        assert _epoll_flags(loop, master) & EPOLLET
    finally:
        loop.close()
        os.close(master)
        os.close(slave)
