"""The loop with real pipes: callbacks, back-pressure registration, timers, errors."""

import os

import pytest

from epollshim.shell.loop import Loop


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
