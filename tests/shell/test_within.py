"""``shell.runtime.within``: a runc call's report, once, bounded by a deadline (real Loop)."""

from __future__ import annotations

from epollshim.shell.loop import Loop
from epollshim.shell.runtime import within


def run_until(loop: Loop, done: list[str]) -> None:
    while not done:  # the deadline's timer is the loop's only event: run() returns after it
        loop.call_later(0.05, loop.stop)
        loop.run()


def test_runc_ending_first_reports_once_and_cancels_the_timer() -> None:
    loop, seen = Loop(), []
    done = within(loop, 30.0, "runc kill --all", seen.append)
    done(1, "container not running")
    done(0, "")  # a second end changes nothing
    assert seen == ["runc kill --all: container not running"]
    assert all(t.cancelled for t in loop.timers)
    loop.close()


def test_success_reports_no_error() -> None:
    loop, seen = Loop(), []
    within(loop, 30.0, "runc kill --all", seen.append)(0, "")
    assert seen == [""]
    loop.close()


def test_the_deadline_reports_first_and_a_late_end_is_ignored() -> None:
    loop, seen = Loop(), []
    done = within(loop, 0.01, "runc kill --all", seen.append)
    run_until(loop, seen)
    assert seen == ["runc kill --all still running after 0.01s"]
    done(0, "")
    assert len(seen) == 1
    loop.close()
