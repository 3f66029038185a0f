"""Kubernetes' path to epollshim, for tests and the demo: a CRI client and a CRI containerd.

Rules of this module:

* ``CriClient`` speaks gRPC (``grpcio``, a dev-only dependency imported here alone) over
  containerd's socket; the messages are ours (``epollshim.tools.cri_api`` over
  ``epollshim.v2.pb``), so no generated code. A failed call raises ``CriError`` with the gRPC
  code name and containerd's words.
* ``CriContainerd`` is a ``PrivateContainerd`` with the CRI plugin enabled, in its own root,
  state and socket like every private containerd, and nothing of the machine's: no CNI (pods
  use the host's network, ``NamespaceMode.NODE``; the CNI dirs are empty dirs of ours, so a
  host CNI config is never read), ``restrict_oom_score_adj = true`` (the sandbox asks for
  -998, which an unprivileged-looking VM refuses), AppArmor off, the streaming server on
  127.0.0.1 with a port the kernel picks. Runtime handlers: ``epollshim``
  (``io.containerd.epollshim.v2``) and ``runc`` (``io.containerd.runc.v2``, the reference).
* Images come from our own code, never a registry: the busybox image, and a pause image
  (the same busybox whose command waits for SIGTERM or SIGINT and exits 0), both imported
  into ``k8s.io``, the only namespace the CRI plugin uses; ``sandbox_image`` names the pause
  image, which is therefore never pulled.
* Every pod gets ``cgroup_parent`` = our own cgroup (``/epollshim-cri-<random>``), so what
  runc leaves in the cgroup tree is ours to find and remove. ``stop`` removes every pod
  through CRI first (as kubelet would), then stops containerd (``PrivateContainerd.stop``),
  then removes our cgroup parent in every hierarchy.
* gRPC's fork support is off (``GRPC_ENABLE_FORK_SUPPORT=false``, set before ``grpc`` is
  imported unless the environment says otherwise). With it on, gRPC restarts its poller
  thread in every forked child; a child that then closes its descriptors before exec, as
  ``ptyprocess`` does, makes that thread's epoll_wait fail with EBADF, and gRPC aborts the
  child (SIGABRT). The test process keeps a CRI client connected for the whole session and
  forks terminals after it; no child of ours ever uses gRPC.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TypeVar

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")  # see the module's docstring

import grpc

from epollshim.tools import cri_api as c
from epollshim.tools import image
from epollshim.tools.containerd import POLL, PrivateContainerd, remove_cgroups
from epollshim.v2.pb import Message

M = TypeVar("M", bound=Message)

CRI_PLUGIN = "io.containerd.grpc.v1.cri"
CRI_NAMESPACE = "k8s.io"  # the CRI plugin's containerd namespace (fixed in containerd 1.6)
HANDLERS = {"epollshim": "io.containerd.epollshim.v2", "runc": "io.containerd.runc.v2"}
PAUSE_IMAGE = "docker.io/library/epollshim-pause:latest"
# The pod's first process: busybox sh as PID 1 of the pod's PID namespace. A trapped signal
# interrupts `wait` at once; PID 1 ignores any signal it has no handler for, hence the trap.
PAUSE_CMD = ("sh", "-c", "trap 'kill $!; exit 0' TERM INT; while :; do sleep 86400 & wait $!; done")
IMAGE_METHODS = {"ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"}


class CriError(Exception):
    """A CRI call failed: ``code`` is the gRPC status name (``NOT_FOUND``...)."""

    def __init__(self, method: str, code: str, details: str) -> None:
        super().__init__(f"{method}: {code}: {details}")
        self.method, self.code, self.details = method, code, details


class CriClient:
    """Blocking unary CRI calls (``runtime.v1``) on a unix socket."""

    def __init__(self, address: str, timeout: float = 60.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(f"unix://{address}")

    def close(self) -> None:
        self._channel.close()

    def call(
        self, method: str, request: Message, response: type[M], timeout: float | None = None
    ) -> M:
        """Call ``method`` of the runtime (or image) service; ``CriError`` if it fails."""
        service = c.IMAGE_SERVICE if method in IMAGE_METHODS else c.RUNTIME_SERVICE
        stub = self._channel.unary_unary(
            f"/{service}/{method}",
            request_serializer=Message.encode,
            response_deserializer=response.decode,
        )
        try:
            answer = stub(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as e:
            if isinstance(e, grpc.Call):
                raise CriError(method, e.code().name, e.details() or "") from None
            raise CriError(method, "UNKNOWN", str(e)) from None
        assert isinstance(answer, response)
        return answer

    # -- the calls the tests and the demo make --------------------------------------------

    def version(self) -> c.VersionResponse:
        return self.call("Version", c.VersionRequest(), c.VersionResponse)

    def status(self) -> c.StatusResponse:
        return self.call("Status", c.StatusRequest(), c.StatusResponse)

    def run_pod(self, config: c.PodSandboxConfig, handler: str) -> str:
        request = c.RunPodSandboxRequest(config=config, runtime_handler=handler)
        return self.call("RunPodSandbox", request, c.RunPodSandboxResponse).pod_sandbox_id

    def stop_pod(self, pod_id: str) -> None:
        self.call("StopPodSandbox", c.StopPodSandboxRequest(pod_id), c.StopPodSandboxResponse)

    def remove_pod(self, pod_id: str) -> None:
        request = c.RemovePodSandboxRequest(pod_id)
        self.call("RemovePodSandbox", request, c.RemovePodSandboxResponse)

    def pod_status(self, pod_id: str, verbose: bool = False) -> c.PodSandboxStatusResponse:
        request = c.PodSandboxStatusRequest(pod_id, verbose)
        return self.call("PodSandboxStatus", request, c.PodSandboxStatusResponse)

    def list_pods(self) -> list[c.PodSandbox]:
        return self.call(
            "ListPodSandbox", c.ListPodSandboxRequest(), c.ListPodSandboxResponse
        ).items

    def create_container(
        self, pod_id: str, config: c.ContainerConfig, sandbox_config: c.PodSandboxConfig
    ) -> str:
        request = c.CreateContainerRequest(pod_id, config, sandbox_config)
        return self.call("CreateContainer", request, c.CreateContainerResponse).container_id

    def start_container(self, container_id: str) -> None:
        request = c.StartContainerRequest(container_id)
        self.call("StartContainer", request, c.StartContainerResponse)

    def stop_container(self, container_id: str, timeout: int = 0) -> None:
        request = c.StopContainerRequest(container_id, timeout)
        # containerd waits up to `timeout` seconds before SIGKILL: give the call that and more
        self.call("StopContainer", request, c.StopContainerResponse, self.timeout + timeout)

    def remove_container(self, container_id: str) -> None:
        request = c.RemoveContainerRequest(container_id)
        self.call("RemoveContainer", request, c.RemoveContainerResponse)

    def container_status(
        self, container_id: str, verbose: bool = False
    ) -> c.ContainerStatusResponse:
        request = c.ContainerStatusRequest(container_id, verbose)
        return self.call("ContainerStatus", request, c.ContainerStatusResponse)

    def list_containers(self, pod_id: str = "") -> list[c.Container]:
        request = c.ListContainersRequest(c.ContainerFilter(pod_sandbox_id=pod_id))
        return self.call("ListContainers", request, c.ListContainersResponse).containers

    def exec_sync(
        self, container_id: str, cmd: Sequence[str], timeout: int = 0
    ) -> c.ExecSyncResponse:
        request = c.ExecSyncRequest(container_id, list(cmd), timeout)
        return self.call("ExecSync", request, c.ExecSyncResponse, self.timeout + timeout)

    def exec(self, request: c.ExecRequest) -> str:
        """The streaming URL of an exec (``epollshim.tools.k8s_stream`` talks to it)."""
        return self.call("Exec", request, c.ExecResponse).url

    def attach(self, request: c.AttachRequest) -> str:
        return self.call("Attach", request, c.AttachResponse).url

    def container_stats(self, container_id: str) -> c.ContainerStats | None:
        request = c.ContainerStatsRequest(container_id)
        return self.call("ContainerStats", request, c.ContainerStatsResponse).stats

    def image_status(self, name: str) -> c.Image | None:
        request = c.ImageStatusRequest(c.ImageSpec(name))
        return self.call("ImageStatus", request, c.ImageStatusResponse).image

    def wait_container_state(
        self, container_id: str, state: int, timeout: float = 30.0
    ) -> c.ContainerStatus:
        """Poll ContainerStatus until the container is in ``state`` (bounded); its status."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.container_status(container_id).status
            assert status is not None
            if status.state == state:
                return status
            if time.monotonic() > deadline:
                want, got = c.CONTAINER_STATE_NAMES[state], c.CONTAINER_STATE_NAMES[status.state]
                raise TimeoutError(f"container {container_id} still {got} (not {want})")
            time.sleep(POLL)


# ------------------------------------------------------------------------- configs


def pod_config(
    name: str,
    *,
    log_directory: str,
    cgroup_parent: str,
    namespace: str = "epollshim",
    annotations: Mapping[str, str] | None = None,
) -> c.PodSandboxConfig:
    """A pod in the host's network (no CNI), with its own PID and IPC namespaces."""
    host_network = c.NamespaceOption(network=c.NamespaceMode.NODE)
    return c.PodSandboxConfig(
        metadata=c.PodSandboxMetadata(name, uid=secrets.token_hex(8), namespace=namespace),
        log_directory=log_directory,
        annotations=dict(annotations or {}),
        linux=c.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent,
            security_context=c.LinuxSandboxSecurityContext(namespace_options=host_network),
        ),
    )


def container_config(
    name: str,
    command: Sequence[str],
    *,
    image_name: str = image.DEFAULT_NAME,
    attempt: int = 0,
    stdin: bool = False,
    tty: bool = False,
) -> c.ContainerConfig:
    """A busybox container whose log goes to ``<pod log dir>/<name>_<attempt>.log``."""
    return c.ContainerConfig(
        metadata=c.ContainerMetadata(name, attempt),
        image=c.ImageSpec(image_name),
        command=list(command),
        log_path=f"{name}_{attempt}.log",
        stdin=stdin,
        tty=tty,
    )


def cri_toml(sandbox_image: str, cni_dir: str) -> str:
    """The CRI plugin's section of a containerd 1.6 config (version 2)."""
    q = f'[plugins."{CRI_PLUGIN}"'
    lines = [
        f"{q}]",
        f'  sandbox_image = "{sandbox_image}"',
        "  restrict_oom_score_adj = true",
        "  disable_apparmor = true",
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "0"',
        f"{q}.cni]",
        f'  bin_dir = "{cni_dir}/bin"',
        f'  conf_dir = "{cni_dir}/net.d"',
        f"{q}.containerd]",
        '  default_runtime_name = "runc"',
    ]
    for handler, runtime_type in HANDLERS.items():
        lines += [f"{q}.containerd.runtimes.{handler}]", f'  runtime_type = "{runtime_type}"']
    return "\n".join(lines) + "\n"


class CriContainerd:
    """A private containerd serving CRI; a context manager.

    ``client`` is a ``CriClient`` on its socket, ``ctd`` the ``PrivateContainerd``;
    ``pod_config``/``log_dir`` give each pod a log directory under our dir and our cgroup.
    """

    def __init__(
        self, base_dir: str | None = None, *, debug_level: str = "debug", start_timeout: float = 60
    ) -> None:
        self.ctd = PrivateContainerd(
            base_dir,
            debug_level=debug_level,
            enable_plugins=[CRI_PLUGIN],
            start_timeout=start_timeout,
        )
        base = self.ctd.base
        self.cni_dir = os.path.join(base, "cni")
        self.log_root = os.path.join(base, "pods")
        self.ctd.extra_config = cri_toml(PAUSE_IMAGE, self.cni_dir)
        self.cgroup_parent = f"/epollshim-cri-{secrets.token_hex(4)}"
        self.image = image.DEFAULT_NAME
        self.pause_image = PAUSE_IMAGE
        self._client: CriClient | None = None

    @property
    def client(self) -> CriClient:
        if self._client is None:
            raise RuntimeError("CriContainerd is not started")
        return self._client

    @property
    def address(self) -> str:
        return self.ctd.address

    def __enter__(self) -> CriContainerd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> CriContainerd:
        """Start containerd, import both images into k8s.io, wait until CRI sees them."""
        for d in (f"{self.cni_dir}/bin", f"{self.cni_dir}/net.d", self.log_root):
            os.makedirs(d, exist_ok=True)
        self.ctd.start()
        try:
            self._client = CriClient(self.ctd.address)
            ns = [CRI_NAMESPACE]
            image.import_into(self.ctd.address, ns, self.image)
            image.import_into(self.ctd.address, ns, self.pause_image, PAUSE_CMD)
            self._wait_images()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_images(self, timeout: float = 30.0) -> None:
        """The CRI plugin learns of imported images from containerd's events: wait for it."""
        deadline = time.monotonic() + timeout
        while any(self.client.image_status(n) is None for n in (self.image, self.pause_image)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRI does not list {self.image} and {self.pause_image}")
            time.sleep(POLL)

    def pod_config(
        self, name: str, annotations: Mapping[str, str] | None = None
    ) -> c.PodSandboxConfig:
        """``pod_config`` with a fresh log directory of ours and our cgroup parent."""
        log_directory = os.path.join(self.log_root, f"{name}-{secrets.token_hex(4)}")
        os.makedirs(log_directory)
        return pod_config(
            name,
            log_directory=log_directory,
            cgroup_parent=self.cgroup_parent,
            annotations=annotations,
        )

    def remove_all_pods(self) -> None:
        """StopPodSandbox and RemovePodSandbox for every pod (containers go with them)."""
        for pod in self.client.list_pods():
            self.client.stop_pod(pod.id)
            self.client.remove_pod(pod.id)

    def stop(self) -> None:
        """Remove the pods (best effort), stop containerd and clean up after it."""
        try:
            if self._client is not None and self.ctd.pid is not None:
                try:
                    self.remove_all_pods()
                except CriError:  # containerd is failing: PrivateContainerd.stop sweeps up
                    pass
        finally:
            if self._client is not None:
                self._client.close()
            self.ctd.stop()
            remove_cgroups(self.cgroup_parent.strip("/"))
