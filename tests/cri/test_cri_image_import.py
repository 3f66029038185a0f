"""``epollshim image import``: our busybox image into a containerd, as a new user runs it.

Against the session's private containerd (never the machine's): the image lands in the
``default`` and ``k8s.io`` namespaces, the README's ``ctr run`` example then works as written
(with our socket), and CRI sees the image.
"""

from __future__ import annotations

import secrets
import subprocess
import sys

from epollshim.tools import image
from epollshim.tools.cri import CriContainerd


def epollshim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "epollshim", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )


def images(cri: CriContainerd, ns: str) -> list[str]:
    return cri.ctd.ctr("image", "ls", "-q", namespace=ns, check=True).stdout.split()


def test_import_into_default_and_k8s_io(cri: CriContainerd) -> None:
    ns = f"epollshim-import-{secrets.token_hex(3)}"
    assert image.DEFAULT_NAME not in images(cri, ns)
    r = epollshim("image", "import", "--address", cri.address, "--namespace", ns)
    assert (r.returncode, r.stderr) == (0, "")
    assert image.DEFAULT_NAME in r.stdout and ns in r.stdout
    assert image.DEFAULT_NAME in images(cri, ns)

    r = epollshim("image", "import", "--address", cri.address)  # default and k8s.io
    assert r.returncode == 0, r.stderr
    assert image.DEFAULT_NAME in images(cri, "default")
    assert image.DEFAULT_NAME in images(cri, "k8s.io")
    found = cri.client.image_status(image.DEFAULT_NAME)
    assert found is not None and image.DEFAULT_NAME in found.repo_tags


def test_the_readme_example_runs(cri: CriContainerd) -> None:
    """``ctr run --rm --runtime io.containerd.epollshim.v2 <our image> demo echo hi``."""
    assert epollshim("image", "import", "--address", cri.address).returncode == 0
    cid = f"readme-{secrets.token_hex(4)}"
    argv = ["run", "--rm", "--runtime", "io.containerd.epollshim.v2", image.DEFAULT_NAME, cid]
    r = cri.ctd.ctr(*argv, "echo", "hi", namespace="default", timeout=120)
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr


def test_a_failed_import_is_one_line_and_exit_1(cri: CriContainerd) -> None:
    r = epollshim("image", "import", "--address", cri.address, "--namespace", "not valid!")
    assert r.returncode == 1
    assert r.stderr.startswith("epollshim image import: namespace not valid!: ctr: ")
    assert r.stderr.count("\n") == 1
    assert epollshim("image").returncode == 2  # usage
