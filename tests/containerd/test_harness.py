"""The harness itself, proved with containerd's stock runtime (io.containerd.runc.v2).

If these fail, every containerd test of epollshim is meaningless: the image, the private
containerd, its restart and its clean-up are checked here against the reference shim.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from epollshim.tools import image
from epollshim.tools.containerd import ContainerdError, PrivateContainerd, mounts_under
from epollshim.tools.wait import until

RUNC = "io.containerd.runc.v2"


def poll(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``check()`` with a deadline (a bounded poll, not a sleep)."""
    until(what, check, timeout, error=pytest.fail.Exception)


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie waiting for init to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def task_pids(ctd: PrivateContainerd) -> dict[str, tuple[int, str]]:
    out = ctd.ctr("task", "ls", check=True).stdout.splitlines()[1:]
    return {f[0]: (int(f[1]), f[2]) for f in (line.split() for line in out)}


# -- the image (no containerd needed) ----------------------------------------------------------


def _blob(t: tarfile.TarFile, digest: str) -> bytes:
    f = t.extractfile("blobs/sha256/" + digest.removeprefix("sha256:"))
    assert f is not None, digest
    return f.read()


def test_image_tar_is_deterministic_and_well_formed(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    assert image.build_image_tar(a, "example.org/x/y:v1") == "example.org/x/y:v1"
    image.build_image_tar(b, "example.org/x/y:v1")
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as t:
        assert sorted(t.getnames())[-2:] == ["index.json", "oci-layout"]
        index_file = t.extractfile("index.json")
        assert index_file is not None
        (desc,) = json.load(index_file)["manifests"]
        assert desc["annotations"] == {
            "io.containerd.image.name": "example.org/x/y:v1",
            "org.opencontainers.image.ref.name": "v1",
        }
        manifest = json.loads(_blob(t, desc["digest"]))
        (layer_desc,) = manifest["layers"]
        assert layer_desc["mediaType"] == image.MT_LAYER
        config = json.loads(_blob(t, manifest["config"]["digest"]))
        layer = _blob(t, layer_desc["digest"])
    assert config["rootfs"]["diff_ids"] == [layer_desc["digest"]]
    assert config["os"] == "linux" and config["architecture"] == image.machine_arch()
    assert config["config"]["Cmd"] == ["sh"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as lt:
        sh = lt.getmember("bin/sh")
        assert sh.issym() and sh.linkname == "busybox"
        assert lt.getmember("bin/busybox").mode == 0o755
        assert lt.getmember("etc/passwd").isfile()


# -- the session containerd --------------------------------------------------------------------


@pytest.mark.containerd
def test_stock_runc_shim_output_and_exit_code(
    containerd: PrivateContainerd, unique_id: str
) -> None:
    image_name = containerd.image or ""
    r = containerd.ctr(
        "run", "--rm", "--runtime", RUNC, image_name, unique_id, "sh", "-c", "echo hi; exit 3"
    )
    assert (r.stdout, r.stderr, r.returncode) == ("hi\n", "", 3)
    assert unique_id not in containerd.ctr("containers", "ls", "-q").stdout.split()


@pytest.mark.containerd
def test_harness_can_fail(containerd: PrivateContainerd, unique_id: str) -> None:
    r = containerd.ctr("run", "--rm", "docker.io/library/no-such-image:latest", unique_id, "true")
    assert r.returncode != 0 and "not found" in r.stderr


# -- private instances: restart and clean-up ------------------------------------------------


@pytest.mark.containerd
@pytest.mark.usefixtures("containerd_available")
def test_start_failure_reports_the_log(tmp_path: Path) -> None:
    broken = PrivateContainerd(tmp_path / "ctd", extra_config="this is = = not toml\n")
    with pytest.raises(ContainerdError, match="exited with"):
        broken.start()
    assert broken.pid is None and not mounts_under(broken.base)


def namespace_cgroup(namespace: str) -> str:
    """Where runc puts ctr's containers of ``namespace`` (cgroup v1: the pids hierarchy)."""
    v1 = "/sys/fs/cgroup/pids"
    return os.path.join(v1 if os.path.isdir(v1) else "/sys/fs/cgroup", namespace)


@pytest.mark.containerd
@pytest.mark.usefixtures("containerd_available")
def test_restart_keeps_a_running_task_and_stop_leaves_nothing(unique_id: str) -> None:
    ctd = PrivateContainerd()
    try:
        ctd.start()
        ctd.import_image()
        started = ctd.ctr(
            "run", "-d", "--runtime", RUNC, ctd.image or "", unique_id, "sleep", "600"
        )
        assert started.returncode == 0, started.stderr
        task_pid, status = task_pids(ctd)[unique_id]
        assert status == "RUNNING"
        first_pid = ctd.pid
        ctd.restart()
        assert ctd.pid != first_pid and first_pid is not None and not alive(first_pid)
        assert task_pids(ctd)[unique_id] == (task_pid, "RUNNING")
        ctd_pid, shims, base = ctd.pid, ctd._shim_pids(), ctd.base
        assert ctd_pid is not None and shims and mounts_under(base)
        assert os.path.isdir(namespace_cgroup(ctd.namespace))  # runc made it
    finally:
        ctd.stop()
    assert not alive(ctd_pid)
    poll("the task and its shim to end", lambda: not any(map(alive, [task_pid, *shims])))
    assert not mounts_under(base)
    assert not os.path.exists(base)
    assert not os.path.exists(f"/run/containerd/runc/{ctd.namespace}")
    assert not os.path.exists(namespace_cgroup(ctd.namespace)), "a cgroup was left"
