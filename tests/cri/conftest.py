"""Fixtures for the Kubernetes path: containerd's CRI plugin driving epollshim (and runc-v2).

* ``cri`` (session): one ``CriContainerd`` (private root, state and socket; the CRI plugin;
  the busybox and pause images in ``k8s.io``), shared by every CRI test to keep them fast.
* ``handler`` (``epollshim``, ``runc``): the runtime handler the test's pods use; every test
  taking it runs once on each, with the name in its id. The runc-v2 run proves the test:
  a behaviour it checks is containerd's and runc's, so a failure on epollshim alone is ours.
* ``pod`` (function): a running pod on ``handler`` in the host's network, removed afterwards.

Requires root, containerd, ctr, runc and busybox-static (``make deps``); without them the
tests are skipped with the reason (``-ra``). grpcio comes with the dev extra (``make dev``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from crisupport import Pod

from epollshim.tools.cri import HANDLERS, CriContainerd


def require_cri() -> None:
    if os.geteuid() != 0:
        pytest.skip("CRI tests need root")
    missing = [b for b in ("containerd", "ctr", "runc") if shutil.which(b) is None]
    if not os.access("/bin/busybox", os.X_OK):
        missing.append("/bin/busybox (busybox-static)")
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (run `make deps`)")


@pytest.fixture(scope="session")
def cri() -> Iterator[CriContainerd]:
    require_cri()
    with CriContainerd() as c:
        yield c


@pytest.fixture(params=sorted(HANDLERS))
def handler(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pod(cri: CriContainerd, handler: str) -> Iterator[Pod]:
    p = Pod(cri, handler)
    try:
        yield p
    finally:
        p.remove()
