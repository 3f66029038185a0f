"""Build a tiny OCI image layout tarball from busybox-static, with our own code.

Rules of this module:

* One uncompressed layer (``application/vnd.oci.image.layer.v1.tar``), so its digest is also
  its diff_id. It holds the same files as ``epollshim.bundle``'s rootfs: ``/bin/busybox``,
  one symlink per applet, ``/etc/{passwd,group,hosts}`` and the empty mount-point dirs.
* Deterministic: sorted entries, fixed mtimes, uid/gid 0 with empty owner names, canonical JSON.
  Building twice on the same machine gives the same bytes, so the image digest is stable.
* The image name goes into ``index.json`` as ``io.containerd.image.name`` (what
  ``ctr image import`` names the image after) and the tag as ``org.opencontainers.image.ref.name``
  (what containerd's own exporter writes there).
* ``epollshim image import`` (``import_main``) builds it and loads it into a containerd with
  ``ctr image import``, in the ``default`` and ``k8s.io`` (CRI) namespaces unless told which.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from typing import Any

from epollshim import bundle

DEFAULT_NAME = "docker.io/library/epollshim-busybox:latest"
DEFAULT_CMD = ("sh",)
DEFAULT_ADDRESS = "/run/containerd/containerd.sock"
DEFAULT_NAMESPACES = ("default", "k8s.io")  # ctr's, and the CRI plugin's (Kubernetes)
MTIME = 1672531200  # 2023-01-01T00:00:00Z: fixed so the digests do not change between builds
CREATED = "2023-01-01T00:00:00Z"

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"

# uname -m -> GOARCH, the spelling OCI platforms use.
_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64": "mips64le",
}


def machine_arch() -> str:
    """This machine's architecture as an OCI platform name (amd64, arm64, ...)."""
    m = platform.machine()
    return _GOARCH.get(m, m)


def _info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.size = size
    ti.linkname = link
    ti.mtime = MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _tar_bytes(entries: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def layer_bytes() -> bytes:
    """The single layer: busybox, its applet symlinks, /etc files, empty dirs. Sorted."""
    entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    for d, mode in bundle.EMPTY_DIRS.items():
        entries[d] = (_info(d, tarfile.DIRTYPE, mode), None)
    with open(bundle.BUSYBOX, "rb") as f:
        busybox = f.read()
    entries["bin/busybox"] = (_info("bin/busybox", tarfile.REGTYPE, 0o755, len(busybox)), busybox)
    for applet in bundle.busybox_applets():
        path = f"bin/{applet}"
        entries[path] = (_info(path, tarfile.SYMTYPE, 0o777, link="busybox"), None)
    for name, text in bundle.ETC_FILES.items():
        data = text.encode()
        path = f"etc/{name}"
        entries[path] = (_info(path, tarfile.REGTYPE, 0o644, len(data)), data)
    # A parent is a prefix of its children, so plain sorting puts every dir before its content.
    return _tar_bytes([entries[k] for k in sorted(entries)])


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(blob), "size": len(blob)}


def _digest(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _ref_name(name: str) -> str:
    """The tag of ``name`` (``latest`` in ``docker.io/x/y:latest``), else the whole name."""
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else name


def image_blobs(
    name: str = DEFAULT_NAME, cmd: Sequence[str] = DEFAULT_CMD
) -> tuple[dict[str, bytes], bytes]:
    """(blobs by digest, index.json bytes) of the image layout; ``cmd`` is its default Cmd."""
    arch = machine_arch()
    layer = layer_bytes()
    config = _canonical(
        {
            "architecture": arch,
            "os": "linux",
            "created": CREATED,
            "config": {"Env": [bundle.DEFAULT_PATH], "Cmd": list(cmd), "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
            "history": [{"created": CREATED, "created_by": "epollshim.tools.image"}],
        }
    )
    manifest = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": _descriptor(MT_CONFIG, config),
            "layers": [_descriptor(MT_LAYER, layer)],
        }
    )
    index = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [
                {
                    **_descriptor(MT_MANIFEST, manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": _ref_name(name),
                    },
                }
            ],
        }
    )
    blobs = {_digest(b): b for b in (layer, config, manifest)}
    return blobs, index


def build_image_tar(
    path: str | os.PathLike[str], name: str = DEFAULT_NAME, cmd: Sequence[str] = DEFAULT_CMD
) -> str:
    """Write the OCI image layout tarball to ``path``; returns the image name.

    Load it with ``ctr image import PATH``; the image is then listed as ``name``.
    """
    blobs, index = image_blobs(name, cmd)
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (_info("blobs", tarfile.DIRTYPE, 0o755), None),
        (_info("blobs/sha256", tarfile.DIRTYPE, 0o755), None),
    ]
    for digest in sorted(blobs):
        blob = blobs[digest]
        member = "blobs/sha256/" + digest.split(":", 1)[1]
        entries.append((_info(member, tarfile.REGTYPE, 0o644, len(blob)), blob))
    layout = _canonical({"imageLayoutVersion": "1.0.0"})
    entries.append((_info("index.json", tarfile.REGTYPE, 0o644, len(index)), index))
    entries.append((_info("oci-layout", tarfile.REGTYPE, 0o644, len(layout)), layout))
    data = _tar_bytes(entries)
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)  # never leave a half-written tarball under the final name
    return name


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m epollshim.tools.image OUT.tar [NAME]``: build the image tarball."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (1, 2) or args[0].startswith("-"):
        print("usage: python -m epollshim.tools.image OUT.tar [NAME]", file=sys.stderr)
        return 2
    try:
        name = build_image_tar(args[0], *args[1:])
    except (OSError, bundle.BundleError) as e:
        print(f"epollshim image: cannot build {args[0]}: {e}", file=sys.stderr)
        return 1
    print(name)
    return 0


class ImageImportError(Exception):
    """``ctr image import`` failed (the message has ctr's own words)."""


def import_into(
    address: str,
    namespaces: Sequence[str] = DEFAULT_NAMESPACES,
    name: str = DEFAULT_NAME,
    cmd: Sequence[str] = DEFAULT_CMD,
    timeout: float = 120.0,
) -> str:
    """Build the image and ``ctr image import`` it into each namespace of the containerd at
    ``address`` (unpacked for its default snapshotter); returns the image name."""
    with tempfile.TemporaryDirectory(prefix="epollshim-image-") as tmp:
        tar = os.path.join(tmp, "image.tar")
        build_image_tar(tar, name, cmd)
        for ns in namespaces:
            argv = ["ctr", "--address", address, "--namespace", ns, "image", "import", tar]
            try:
                r = subprocess.run(
                    argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                raise ImageImportError(f"{' '.join(argv[:5])} image import: {e}") from e
            if r.returncode != 0:
                why = (r.stderr or r.stdout).strip() or f"exit status {r.returncode}"
                raise ImageImportError(f"namespace {ns}: {why}")
    return name


def import_main(argv: Sequence[str]) -> int:
    """``epollshim image import [--address SOCK] [--namespace NS]...``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="epollshim image import",
        description=f"Build the busybox image {DEFAULT_NAME} (from this machine's "
        "busybox-static) and import it into containerd with ctr.",
    )
    parser.add_argument(
        "--address",
        default=DEFAULT_ADDRESS,
        metavar="SOCK",
        help=f"containerd socket (default {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="containerd namespace, may be repeated (default: default and k8s.io)",
    )
    args = parser.parse_args(argv)
    namespaces = args.namespaces or list(DEFAULT_NAMESPACES)
    try:
        name = import_into(args.address, namespaces)
    except (OSError, bundle.BundleError, ImageImportError) as e:
        print(f"epollshim image import: {e}", file=sys.stderr)
        return 1
    print(f"{name} imported into {', '.join(namespaces)} at {args.address}")
    return 0


def cli_main(argv: Sequence[str]) -> int:
    """``epollshim image SUBCOMMAND ...`` (only ``import`` so far)."""
    if argv[:1] == ["import"]:
        return import_main(argv[1:])
    print("usage: epollshim image import [--address SOCK] [--namespace NS]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
