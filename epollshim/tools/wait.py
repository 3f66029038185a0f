"""One bounded poll for the tests, the bench and the tools: ask again until true, with a deadline.

For what the kernel gives no event to block on (a file or a socket appearing, a /proc
field, a ``ctr`` listing): the interval is a poll, never a sleep standing in for
synchronisation, and the deadline is generous (the machine is shared), never a timing
assertion. Each suite binds its own deadline and failure type (``pytest.fail``'s for the
tests, ``BenchError`` for the bench).
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(
    what: str,
    check: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.02,
    fd: int = -1,
    error: Callable[[str], BaseException] = TimeoutError,
) -> T:
    """``check()`` until it returns something truthy, which is returned; ``error(message)``
    is raised after ``timeout`` seconds. Between tries: ``interval`` seconds, or less when
    ``fd`` (if given) turns readable."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise error(f"timed out after {timeout:g} s waiting for {what}")
        select.select([fd] if fd >= 0 else [], [], [], interval)
