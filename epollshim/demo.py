"""``make demo``: real containers through epollshim, shown as they happen.

1. The seed form: ``epollshim run --trace-states`` runs a busybox container
   through runc 1.1 and prints its output, its exit status and the state trace.
2. containerd: a private containerd (own root, state and socket under a temp
   dir) imports a busybox image our code builds, and ``ctr run --runtime
   io.containerd.epollshim.v2`` runs a container on our v2 shim; the shim's
   state trace (``EPOLLSHIM_TRACE``) is read back from containerd's log.
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


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root (runc and containerd)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="epollshim-demo-") as tmp:
        failures = seed_demo(tmp)
        failures += containerd_demo()
    print("\ndemo " + ("OK" if not failures else "FAILED"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
