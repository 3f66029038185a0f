"""``--version``: the line podman's probe accepts, answered without starting Python."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from podmansupport import PrivatePodman

from epollshim.conmon.main import main
from epollshim.conmon.version import TEXT
from epollshim.tools import launchers

# containers/common pkg/config/default.go (podman 4.3.1): probeConmon's pattern, and
# conmon's minimum version 2.0.1.
PROBE = re.compile(r"^(version:|conmon version)? (?P<Major>\d+).(?P<Minor>\d+).(?P<Patch>\d+)")


def test_version_text_passes_podmans_probe() -> None:
    m = PROBE.match(TEXT)
    assert m is not None and m.group(1) == "conmon version"
    assert (int(m["Major"]), int(m["Minor"]), int(m["Patch"])) >= (2, 0, 1)
    assert TEXT.count("\n") == 2 and TEXT.splitlines()[1].startswith("commit: epollshim")


def test_main_prints_the_same_text(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capfd.readouterr().out == TEXT


def test_sh_launcher_answers_version_without_python(tmp_path: Path) -> None:
    # A launcher whose interpreter does not exist still answers --version: no Python ran.
    missing = str(tmp_path / "no-python")
    path = tmp_path / "epollshim-conmon"
    path.write_text(launchers.sh_launcher_text("epollshim.conmon.main:main", TEXT, missing))
    path.chmod(0o755)
    r = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    assert (r.returncode, r.stdout, r.stderr) == (0, TEXT, "")
    r = subprocess.run([path, "--version", "-c", "x"], capture_output=True, check=False)
    assert r.returncode == 127  # anything else goes to the (missing) interpreter


def test_install_launchers_writes_the_sh_launcher(tmp_path: Path) -> None:
    launchers.install_launchers([str(tmp_path)])
    text = (tmp_path / "epollshim-conmon").read_text()
    assert text.startswith("#!/bin/sh\n")
    r = subprocess.run([tmp_path / "epollshim-conmon", "--version"], capture_output=True)
    assert r.stdout.decode() == TEXT


def test_podman_accepts_our_version(podman: PrivatePodman) -> None:
    version = podman.ok("info", "--format", "{{.Host.Conmon.Version}}").strip()
    assert PROBE.match(version), version
