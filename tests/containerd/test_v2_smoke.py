"""Smoke test of containerd-shim-epollshim-v2 with its tracing on (EPOLLSHIM_TRACE=json).

A private containerd started with the variable in its environment passes it to the shim;
the daemon writes one JSON line per transition to its stderr, the bundle's ``log`` FIFO,
which containerd copies into its own log.
"""

from __future__ import annotations

import json

import pytest

from epollshim.tools.containerd import PrivateContainerd

RUNTIME = "io.containerd.epollshim.v2"

pytestmark = pytest.mark.containerd


@pytest.mark.usefixtures("containerd_available")
def test_run_rm_exit_code_output_and_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPOLLSHIM_TRACE", "json")
    with PrivateContainerd() as ctd:
        ctd.import_image()
        script = "printf 'a\\0b'; printf err >&2; exit 3"
        r = ctd.ctr("run", "--rm", "--runtime", RUNTIME, ctd.image, "smoke", "sh", "-c", script,
                    text=False)  # fmt: skip
        assert (r.returncode, r.stdout, r.stderr) == (3, b"a\0b", b"err")
        with open(ctd.log_path) as f:
            traces = [json.loads(line) for line in f if line.startswith('{"time"')]
        steps = [(t["name"], t["from"], t["to"]) for t in traces]
        assert steps == [
            ("smoke", "STARTING", "RUNNING"),
            ("smoke", "RUNNING", "REAPING"),
            ("smoke", "REAPING", "CLEANUP"),
        ]
        assert ctd.ctr("task", "ls", "-q").stdout == ""
