"""epollshim.tools.wait.until: the one bounded poll of the tests, the bench and the tools."""

from __future__ import annotations

import os
import time

import pytest

from epollshim.tools.wait import until


def test_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, "", "ready", "later"])
    assert until("ready", lambda: next(answers), 5.0, interval=0.001) == "ready"


class Gone(Exception):
    pass


def test_raises_the_given_error_naming_what_and_how_long() -> None:
    with pytest.raises(Gone, match=r"^timed out after 0\.05 s waiting for the moon$"):
        until("the moon", lambda: False, 0.05, interval=0.01, error=Gone)
    with pytest.raises(TimeoutError):
        until("the moon", lambda: None, 0.0)


def test_a_readable_fd_ends_the_wait_between_tries_early() -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"x")
        tries: list[float] = []
        # with the fd readable, ten tries fit in far less than one 60 s interval
        until(
            "ten tries",
            lambda: tries.append(time.monotonic()) or len(tries) >= 10,
            600.0,
            interval=60.0,
            fd=r,
        )
        assert len(tries) == 10
    finally:
        os.close(r)
        os.close(w)
