"""``make demo``: real containers through epollshim, shown as they happen.

1. The seed form: ``epollshim run --trace-states`` runs a busybox container
   through runc 1.1 and prints its output, its exit status and the state trace.
2. containerd: a private containerd (own root, state and socket under a temp
   dir) imports a busybox image our code builds, and ``ctr run --runtime
   io.containerd.epollshim.v2`` runs a container on our v2 shim; the shim's
   state trace (``EPOLLSHIM_TRACE``) is read back from containerd's log.
3. Kubernetes' path: a private containerd with its CRI plugin runs one pod (host network, our
   own pause image) with two containers on the ``epollshim`` runtime handler, as kubelet
   would ask for it over CRI; one shim process serves the pod. Their CRI log files and the
   shim's state trace follow.
Everything started here is stopped here (by pid), whatever happens.
"""

import os
import subprocess  # noqa: TID251 - a tool, not the shim: it drives ctr and epollshim run
import sys
import tempfile

COMMAND = "echo hello from busybox on epollshim; uname -sr; exit 3"


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def seed_demo(tmp: str) -> int:
    banner("seed protocol: epollshim run --trace-states -- sh -c '...'")
    env = dict(os.environ, EPOLLSHIM_STATE_BASE=os.path.join(tmp, "state"))
    argv = ["epollshim", "run", "--trace-states", "--runtime-root", os.path.join(tmp, "runc")]
    r = subprocess.run([*argv, "--", "sh", "-c", COMMAND], env=env, stdin=subprocess.DEVNULL)
    print(f"exit status: {r.returncode} (the container's own; 3 expected)", flush=True)
    return 0 if r.returncode == 3 else 1


def containerd_demo() -> int:
    from epollshim.tools.containerd import PrivateContainerd

    banner("containerd 1.6: ctr run --runtime io.containerd.epollshim.v2")
    os.environ["EPOLLSHIM_TRACE"] = "text"  # containerd passes it on to the shim
    with PrivateContainerd(debug_level="info") as ctd:
        image = ctd.import_image()
        id_ = "demo-" + os.urandom(4).hex()
        args = ["run", "--rm", "--runtime", "io.containerd.epollshim.v2", image, id_]
        print(f"$ ctr {' '.join(args)} sh -c '{COMMAND}'", flush=True)
        r = ctd.ctr(*args, "sh", "-c", COMMAND, capture_output=False, timeout=120)
        print(f"exit status: {r.returncode} (3 expected)", flush=True)
        print("the shim's state trace, from containerd's log:")
        with open(ctd.log_path, errors="replace") as f:
            for line in f:
                if "epollshim: trace:" in line:
                    print("  " + line[line.index("epollshim: trace:") :].rstrip())
        return 0 if r.returncode == 3 else 1


CRI_CONTAINERS = {
    "web": "echo web: serving; echo web: a warning >&2; while :; do sleep 3600 & wait $!; done",
    "sidecar": "echo sidecar: watching; while :; do sleep 3600 & wait $!; done",
}


def cri_demo() -> int:
    from epollshim.tools import procfs
    from epollshim.tools.cri import CRI_NAMESPACE, CriContainerd, container_config

    banner("Kubernetes: containerd's CRI plugin, a pod of two containers, handler epollshim")
    os.environ["EPOLLSHIM_TRACE"] = "text"
    with CriContainerd(debug_level="info") as cri:
        client = cri.client
        config = cri.pod_config("demo")
        pod = client.run_pod(config, "epollshim")
        print(f"RunPodSandbox (runtime_handler=epollshim) -> pod {pod[:12]}", flush=True)
        ids = {pod: "pod sandbox"}
        for name, script in CRI_CONTAINERS.items():
            cid = client.create_container(pod, container_config(name, ["sh", "-c", script]), config)
            client.start_container(cid)
            ids[cid] = name
            print(f"CreateContainer + StartContainer {name} -> {cid[:12]}", flush=True)
        for name in CRI_CONTAINERS:  # wait (bounded) for each container's first line
            client_log = os.path.join(config.log_directory, f"{name}_0.log")
            _wait_file_text(client_log, f"{name}:")
        tasks = cri.ctd.ctr("task", "ls", namespace=CRI_NAMESPACE, check=True).stdout
        pids = {f[0]: int(f[1]) for f in (line.split() for line in tasks.splitlines()[1:])}
        shims = set()
        for cid, what in ids.items():
            shim = procfs.stat(pids[cid])[1]
            shims.add(shim)
            print(f"  {what:12} pid {pids[cid]:>7}, its shim: pid {shim}")
        print(f"shim processes serving the pod: {len(shims)} (1 expected)")
        for name in CRI_CONTAINERS:
            print(f"{name}'s log (CRI format: time, stream, full/partial, text):")
            with open(os.path.join(config.log_directory, f"{name}_0.log")) as f:
                print("".join(f"  {line}" for line in f), end="", flush=True)
        client.stop_pod(pod)
        client.remove_pod(pod)
        print(f"StopPodSandbox + RemovePodSandbox {pod[:12]}")
        print("the shim's state trace, from containerd's log:")
        with open(cri.ctd.log_path, errors="replace") as f:
            for line in f:
                if "epollshim: trace:" in line:
                    trace = line[line.index("epollshim: trace:") :].rstrip()
                    for cid in ids:  # 12 characters name a container, as crictl shows them
                        trace = trace.replace(cid, cid[:12])
                    print("  " + trace)
        return 0 if len(shims) == 1 else 1


def _wait_file_text(path: str, text: str, timeout: float = 30.0) -> None:
    """Poll (bounded) until ``path`` holds ``text``."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, errors="replace") as f:
                if text in f.read():
                    return
        except FileNotFoundError:  # containerd has not created it yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} still lacks {text!r} after {timeout:g} s")
        time.sleep(0.02)


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root (runc and containerd)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="epollshim-demo-") as tmp:
        failures = seed_demo(tmp)
        failures += containerd_demo()
        failures += cri_demo()
    print("\ndemo " + ("OK" if not failures else "FAILED"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
