"""Run a long-lived shim in a lean interpreter: ``python -I -S``.

Why: ``site`` (and the ``.pth`` files of whatever else is installed next to
us) imports typing, pathlib, random, zipfile... about 3 MB of private memory
that a shim never uses, paid by every container. A shim process therefore
re-executes itself, once, before it imports anything else, as
``python -I -S -c BOOT ARGS...`` with only our package's parent directory on
``sys.path`` (PyYAML is found there too when installed beside us).
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
}


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


def install_launchers(argv: list[str]) -> int:
    """``epollshim install-launchers [DIR]``: write lean launchers (default /usr/local/bin)."""
    directory = argv[0] if argv else "/usr/local/bin"
    for name, target in LAUNCHERS.items():
        path = os.path.join(directory, name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(launcher_text(target))
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        print(path)
    return 0
