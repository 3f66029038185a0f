"""Fixtures for tests against a real containerd (our own private one, never the system's).

* ``containerd`` (session): a started ``PrivateContainerd`` with the busybox image imported.
  Use ``containerd.ctr(...)``, ``.image``, ``.namespace``, ``.address``; every test must use
  ``unique_id`` for container ids so a failed test cannot break the next one.
* ``unique_id`` (function): a fresh container id, ``t<12 hex digits>``.

Requires root, ``containerd``, ``ctr``, ``runc`` and ``/bin/busybox`` (``make deps``); without
them the tests are skipped with the reason shown by ``-ra``.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator

import pytest

from epollshim.tools.containerd import PrivateContainerd


def require_containerd() -> None:
    """Skip unless this machine can run a private containerd."""
    if os.geteuid() != 0:
        pytest.skip("containerd tests need root")
    missing = [b for b in ("containerd", "ctr", "runc") if shutil.which(b) is None]
    if not os.access("/bin/busybox", os.X_OK):
        missing.append("/bin/busybox (busybox-static)")
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (run `make deps`)")


@pytest.fixture
def containerd_available() -> None:
    """For tests that start their own PrivateContainerd: skip when they cannot."""
    require_containerd()


@pytest.fixture(scope="session")
def containerd() -> Iterator[PrivateContainerd]:
    require_containerd()
    with PrivateContainerd() as ctd:
        ctd.import_image()
        yield ctd


@pytest.fixture
def unique_id() -> str:
    return f"t{secrets.token_hex(6)}"
