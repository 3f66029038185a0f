"""The embedded busybox bundle: its files, its CLI, and real runc runs in both terminal modes.

runc runs use a private ``--root`` under tmp_path and unique container ids (cgroup paths are
machine-wide), and ``runc run`` deletes its container when the process exits.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import subprocess
from pathlib import Path

import ptyprocess
import pytest

from epollshim import bundle


@pytest.fixture
def runc_root(tmp_path: Path) -> Path:
    if os.geteuid() != 0 or shutil.which("runc") is None:
        pytest.skip("needs root and runc (make deps)")
    return tmp_path / "runc-root"


def runc_run(root: Path, bundle_dir: Path) -> subprocess.CompletedProcess[bytes]:
    cid = f"epb-{secrets.token_hex(6)}"
    argv = ["runc", "--root", str(root), "run", "--bundle", str(bundle_dir), cid]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)


def leftover_containers(root: Path) -> list[str]:
    r = subprocess.run(["runc", "--root", str(root), "list", "-q"], capture_output=True, timeout=30)
    return r.stdout.decode().split()


# -- files ----------------------------------------------------------------------------------


def test_rootfs_has_busybox_applets_and_etc(tmp_path: Path) -> None:
    root = bundle.write_rootfs(tmp_path / "rootfs")
    assert os.readlink(root / "bin" / "sh") == "busybox"
    assert set(os.listdir(root / "bin")) == {"busybox", *bundle.busybox_applets()}
    assert os.access(root / "bin" / "busybox", os.X_OK)
    assert (root / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
    for d in ("proc", "sys", "dev"):
        assert (root / d).is_dir() and not os.listdir(root / d)


def test_rootfs_refuses_a_non_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "x").touch()
    with pytest.raises(bundle.BundleError, match="not empty"):
        bundle.write_rootfs(tmp_path / "rootfs")


def test_busybox_copy_is_private_to_each_bundle(tmp_path: Path) -> None:
    a = bundle.write_rootfs(tmp_path / "a")
    b = bundle.write_rootfs(tmp_path / "b")
    assert os.stat(a / "bin" / "busybox").st_ino != os.stat(b / "bin" / "busybox").st_ino


def test_config_follows_runc_spec_defaults(tmp_path: Path) -> None:
    path = bundle.write_bundle(
        tmp_path / "b", ["echo", "hi"], terminal=True, env={"A": "1"}, cwd="/tmp"
    )
    spec = json.loads((path / "config.json").read_text())
    proc = spec["process"]
    assert (proc["args"], proc["terminal"], proc["cwd"]) == (["echo", "hi"], True, "/tmp")
    assert proc["env"] == ["PATH=/bin:/usr/bin", "TERM=xterm", "A=1"]
    assert proc["noNewPrivileges"] is True
    assert proc["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    ns = {n["type"] for n in spec["linux"]["namespaces"]}
    assert ns == {"pid", "ipc", "uts", "mount", "network"}
    pts = next(m for m in spec["mounts"] if m["destination"] == "/dev/pts")
    assert {"newinstance", "ptmxmode=0666", "gid=5"} <= set(pts["options"])
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]


# -- CLI ------------------------------------------------------------------------------------


def test_cli_writes_a_bundle_and_prints_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bundle.main([str(tmp_path / "b"), "--tty", "--", "echo", "hi"]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (f"{tmp_path / 'b'}\n", "")
    spec = json.loads((tmp_path / "b" / "config.json").read_text())
    assert spec["process"]["args"] == ["echo", "hi"] and spec["process"]["terminal"] is True


def test_cli_default_command_is_sh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bundle.main([str(tmp_path / "b")]) == 0
    spec = json.loads((tmp_path / "b" / "config.json").read_text())
    assert spec["process"]["args"] == ["sh"] and spec["process"]["terminal"] is False


@pytest.mark.parametrize(
    "argv",
    [[], ["a", "b"], ["--bogus", "a"], ["a", "--"], ["--tty"]],
    ids=["no-dir", "two-dirs", "unknown-option", "empty-command", "tty-only"],
)
def test_cli_bad_arguments_exit_2_with_one_line(
    argv: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # a wrongly accepted DIR would land here, not in the repo
    assert bundle.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("epollshim bundle: ") and err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_cli_refuses_an_existing_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bundle.main([str(tmp_path / "b")]) == 0
    assert bundle.main([str(tmp_path / "b")]) == 1
    assert "already holds a bundle" in capsys.readouterr().err


# -- real runc --------------------------------------------------------------------------------


@pytest.mark.runc
def test_runc_non_tty_output_is_byte_exact(tmp_path: Path, runc_root: Path) -> None:
    b = bundle.write_bundle(tmp_path / "b", ["sh", "-c", "printf 'a\\tb\\n\\001'; echo err >&2"])
    r = runc_run(runc_root, b)
    assert (r.returncode, r.stdout) == (0, b"a\tb\n\x01")
    assert r.stderr == b"err\n"
    assert leftover_containers(runc_root) == []


@pytest.mark.runc
def test_runc_propagates_exit_code(tmp_path: Path, runc_root: Path) -> None:
    b = bundle.write_bundle(tmp_path / "b", ["sh", "-c", "echo hi; exit 3"])
    r = runc_run(runc_root, b)
    assert (r.returncode, r.stdout) == (3, b"hi\n")


@pytest.mark.runc
def test_runc_root_is_writable_and_hostname_set(tmp_path: Path, runc_root: Path) -> None:
    b = bundle.write_bundle(tmp_path / "b", ["sh", "-c", "echo x > /f && hostname && id -u"])
    r = runc_run(runc_root, b)
    assert (r.returncode, r.stdout) == (0, b"epollshim\n0\n")
    assert (b / "rootfs" / "f").read_text() == "x\n"


@pytest.mark.runc
def test_runc_tty_mode(tmp_path: Path, runc_root: Path) -> None:
    script = "tty; test -t 0 && test -t 1 && echo both-tty; echo $TERM; exit 4"
    b = bundle.write_bundle(tmp_path / "b", ["sh", "-c", script], terminal=True)
    cid = f"epb-{secrets.token_hex(6)}"
    argv = ["runc", "--root", str(runc_root), "run", "--bundle", str(b), cid]
    proc = ptyprocess.PtyProcess.spawn(argv, dimensions=(30, 100))
    chunks = []
    while True:  # ends at EOF (EIO on the master) when runc exits; bounded by the test timeout
        try:
            chunks.append(proc.read(4096))
        except EOFError:
            break
    proc.wait()
    out = b"".join(chunks)
    assert proc.exitstatus == 4, out
    assert b"/dev/pts/0\r\nboth-tty\r\nxterm\r\n" in out
    assert leftover_containers(runc_root) == []
