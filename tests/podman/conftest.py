"""Fixtures for tests that run Debian's podman 4.3 on a monitor of our choice.

* ``store`` (session): a ``PrivatePodman`` (own root, runroot, tmpdir; see
  ``podmansupport``) with our busybox image loaded.
* ``podman`` (function, parametrised ``epollshim`` / ``conmon``): the same store with
  ``--conmon`` pointing at our monitor or at Debian's conmon. After the test every
  container is removed, and no monitor may outlive its container.

Requires root, podman, runc, conmon and /bin/busybox (``make deps``), and our launcher
(``make dev``); otherwise the tests are skipped with the reason shown by ``-ra``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from podmansupport import MONITORS, PrivatePodman, require_podman


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/podman/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.podman)


@pytest.fixture(scope="session")
def store() -> Iterator[PrivatePodman]:
    require_podman()
    pm = PrivatePodman()
    try:
        pm.load_image()
        yield pm
    finally:
        pm.close()


@pytest.fixture(params=sorted(MONITORS))
def podman(request: pytest.FixtureRequest, store: PrivatePodman) -> Iterator[PrivatePodman]:
    store.monitor = MONITORS[request.param]()
    try:
        yield store
    finally:
        left = store.remove_all()
        assert left == [], f"monitors outlived their containers (killed): {left}"
