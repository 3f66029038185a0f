"""The ``delete`` subcommand's own encoder and its "is there anything to do" probes."""

import os

import pytest

from epollshim.v2 import delete
from epollshim.v2.messages import DeleteResponse
from epollshim.v2.pb import Timestamp


@pytest.mark.parametrize(
    ("pid", "status", "ns"),
    [(27861, 137, 1_795_950_720_123_456_789), (0xFFFFFFFF, 137, 10**9), (5, 0, 0), (0, 137, 123)],
)
def test_response_bytes_match_the_schema(pid: int, status: int, ns: int) -> None:
    expected = DeleteResponse(pid=pid, exit_status=status, exited_at=Timestamp.from_ns(ns))
    assert delete.encode_response(pid, status, ns) == expected.encode()


def test_runc_root_from_options_json(tmp_path: os.PathLike[str]) -> None:
    from epollshim.v2.options import RuncOptions

    root = os.path.join(os.fspath(tmp_path), "runc root")
    os.makedirs(os.path.join(root, "ns", "c1"))
    text = RuncOptions(root=root).to_json().encode()
    assert delete._runc_state_exists(text, "ns", "c1")
    assert not delete._runc_state_exists(text, "ns", "c2")
    escaped = RuncOptions(root=root + "\\x").to_json().encode()
    assert delete._runc_state_exists(escaped, "ns", "c2")  # cannot tell cheaply: run runc


def test_mountinfo_lookup() -> None:
    assert delete._maybe_mounted("/proc")
    assert not delete._maybe_mounted("/proc/self")
    assert delete._mountinfo_escape("/a b\\c\td\ne") == b"/a\\040b\\134c\\011d\\012e"
