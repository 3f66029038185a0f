"""What the monitor asks of runc, compared with what conmon asks, through a runc wrapper.

podman runs with ``--runtime`` pointing at a script that logs each runc command line and
execs the real runc, and with a ``containers.conf`` that makes podman pass ``--no-pivot``
and ``--no-new-keyring``; ``--preserve-fds 1`` makes it pass ``--runtime-opt
--preserve-fds --runtime-opt 1``. The ``create`` and ``exec`` commands of both monitors
must agree (global flags as a set: we write ``--log P --log-format json`` where conmon
passes podman's ``--log-format=json --log P``; the console socket's path is each one's own).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from podmansupport import DEADLINE, DEBIAN_CONMON, PrivatePodman, our_monitor, run_args

CONF = "[engine]\nno_pivot_root = true\n[containers]\nkeyring = false\n"


def runc_commands(store: PrivatePodman, monitor: str, tmp: Path) -> dict[str, list[str]]:
    """The ``create`` and ``exec`` runc command lines one monitor ran (normalised)."""
    log = tmp / f"runc-{Path(monitor).name}.log"
    wrapper = tmp / "runc"
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec {shutil.which("runc")} "$@"\n'
    )
    wrapper.chmod(0o755)
    conf = tmp / "containers.conf"
    conf.write_text(CONF)
    env = {"CONTAINERS_CONF": str(conf)}
    store.monitor = monitor
    opts = ("-d", "--runtime", str(wrapper), "--preserve-fds", "1")
    argv = store.argv(*run_args("sh", "-c", "echo via-fd3 >&3; exec sleep 1000", opts=opts))
    # podman with a file as its fd 3, which --preserve-fds 1 hands to the container
    shell = 'f=$1; shift; exec "$@" 3>>"$f"'
    r = subprocess.run(
        ["sh", "-c", shell, "sh", str(tmp / "fd3"), *argv],
        env={**os.environ, **env},
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=DEADLINE,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    cid = r.stdout.decode().strip()
    store.ok("--runtime", str(wrapper), "exec", "-t", cid, "true", env=env)
    store.remove_all()
    commands = {}
    for line in log.read_text().splitlines():
        words = line.split()
        for verb in ("create", "exec"):
            if verb in words:
                commands[verb] = normalise(words, verb)
    return commands


def normalise(words: list[str], verb: str) -> list[str]:
    """Global flag names (their values are per container) | the command, ids as ID."""
    words = [w if len(w) < 60 else "ID" for w in words]  # 64-hex ids and the paths with them
    at = words.index(verb)
    flags, args = words[:at], words[at:]
    flags = sorted(f"--log-format={v}" if f == "--log-format" else f for f, v in pairs(flags))
    if "--console-socket" in args:
        args[args.index("--console-socket") + 1] = "SOCKET"
    return [*flags, "|", *args]


def pairs(flags: list[str]) -> list[tuple[str, str]]:
    """(flag, value) for ``--flag value`` and ``--flag=value``."""
    out, it = [], iter(flags)
    for flag in it:
        name, eq, value = flag.partition("=")
        out.append((name, value) if eq else (name, next(it)))
    return out


def test_runc_commands_match_conmons(store: PrivatePodman, tmp_path: Path) -> None:
    theirs = runc_commands(store, DEBIAN_CONMON, tmp_path)
    ours = runc_commands(store, our_monitor(), tmp_path)
    assert set(theirs) == {"create", "exec"}
    assert "--no-pivot" in theirs["create"] and "--no-new-keyring" in theirs["create"]
    assert "--preserve-fds" in theirs["create"] and "--tty" in theirs["exec"]
    assert ours == theirs
    assert (tmp_path / "fd3").read_text() == "via-fd3\n" * 2  # one line from each monitor
