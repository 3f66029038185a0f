"""Run a long-lived shim in a lean interpreter: ``python -I -S``.

Why: ``site`` (and the ``.pth`` files of whatever else is installed next to
us) imports typing, pathlib, random, zipfile... about 3 MB of private memory
that a shim never uses, paid by every container. A shim process therefore
re-executes itself, once, before it imports anything else, as
``python -I -S -c BOOT ARGS...`` with only our package's parent directory on
``sys.path`` (PyYAML is found there too when installed beside us).

``install-launchers`` writes one launcher per binary: a ``#!python -IS`` script, or for
the conmon-compatible monitor a ``/bin/sh`` script that answers ``--version`` itself
(podman asks that several times per container) and ``exec``s ``python -IS`` otherwise.
"""

import os
import sys

import epollshim

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(epollshim.__file__)))


def argv(target: str, args: list[str]) -> list[str]:
    """The command line running ``target`` (``module:function``) leanly with ``args``."""
    module, _, function = target.partition(":")
    boot = (
        f"import sys;sys.path.insert(0,{PACKAGE_PARENT!r});"
        f"from {module} import {function} as f;sys.exit(f(sys.argv[1:]))"
    )
    return [sys.executable, "-I", "-S", "-c", boot, *args]


def reexec(target: str, args: list[str]) -> None:
    """Become the lean form of ``target`` unless we already are (then return)."""
    if sys.flags.no_site or os.environ.get("EPOLLSHIM_NO_REEXEC") == "1":
        return
    command = argv(target, args)
    os.execv(command[0], command)


LAUNCHERS = {
    "epollshim": "epollshim.cli:main",
    "containerd-shim-epollshim-v2": "epollshim.v2.main:main",
    "epollshim-conmon": "epollshim.conmon.main:main",
}

# Launchers that answer a lone ``--version`` in /bin/sh, before any Python starts: podman
# runs ``conmon --version`` about 8 times per container (here 1 ms in sh, 14 ms for a
# python -IS that prints one line, 4 ms for conmon itself). Value: the module whose
# ``TEXT`` is the answer, read when the launcher is written.
SH_VERSION = {"epollshim-conmon": "epollshim.conmon.version"}


def launcher_text(target: str) -> str:
    """A launcher script that starts ``target`` leanly, with no ``site`` at all.

    pip's console scripts run ``site`` first: here that is about 100 ms and
    3 MB, paid on every container start (containerd waits for the shim's
    ``start``) and by every shim; this launcher skips it.
    """
    module, _, function = target.partition(":")
    return (
        f"#!{sys.executable} -IS\n"  # the kernel passes one argument
        "# Written by `epollshim install-launchers`: starts without `site` (fast, small).\n"
        f"import sys\nsys.path.insert(0, {PACKAGE_PARENT!r})\n"
        f"from {module} import {function}\nsys.exit({function}())\n"
    )


def sh_launcher_text(target: str, version: str) -> str:
    """A /bin/sh launcher: prints ``version`` for a lone ``--version``, else execs ``target``
    leanly (``exec`` keeps the pid, the fds and the environment the caller gave)."""
    import shlex  # install time only: shlex imports re

    command = " ".join(shlex.quote(a) for a in argv(target, []))
    lines = " ".join(shlex.quote(line) for line in version.splitlines())
    return (
        "#!/bin/sh\n"
        "# Written by `epollshim install-launchers`: answers --version without starting\n"
        "# Python; runs everything else as python -IS (no `site`: fast, small).\n"
        'if [ "$#" = 1 ] && [ "$1" = --version ]; then\n'
        f"  printf '%s\\n' {lines}\n"
        "  exit 0\n"
        "fi\n"
        f'exec {command} "$@"\n'
    )


def install_launchers(argv: list[str]) -> int:
    """``epollshim install-launchers [DIR]``: write lean launchers (default /usr/local/bin)."""
    directory = argv[0] if argv else "/usr/local/bin"
    for name, target in LAUNCHERS.items():
        path = os.path.join(directory, name)
        tmp = path + ".tmp"
        if name in SH_VERSION:
            import importlib  # install time only

            text = sh_launcher_text(target, importlib.import_module(SH_VERSION[name]).TEXT)
        else:
            text = launcher_text(target)
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        print(path)
    return 0
