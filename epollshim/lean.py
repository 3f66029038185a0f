"""Run a long-lived shim in a lean interpreter: ``python -I -S``.

Why: ``site`` (and the ``.pth`` files of whatever else is installed next to
us) imports typing, pathlib, random, zipfile... about 3 MB of private memory
that a shim never uses, paid by every container. A shim process therefore
re-executes itself, once, before it imports anything else, as
``python -I -S -c BOOT ARGS...`` with only our package's parent directory on
``sys.path`` (PyYAML is found there too when installed beside us).

``epollshim install-launchers`` (``epollshim.tools.launchers``) writes scripts that start
each binary that way in the first place, so no shim pays for the re-exec.
"""

import os
import sys

import epollshim

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(epollshim.__file__)))


def path_statements(sites: list[str]) -> list[str]:
    """Python statements putting our package first on ``sys.path`` and ``sites`` (package
    directories, for PyYAML) after the interpreter's own."""
    statements = ["import sys", f"sys.path.insert(0,{PACKAGE_PARENT!r})"]
    if sites:
        statements.append(f"sys.path+={sites!r}")
    return statements


def boot(target: str, sites: list[str]) -> str:
    """The ``-c`` code running ``target`` (``module:function``) with ``sys.argv[1:]``."""
    module, _, function = target.partition(":")
    run = f"from {module} import {function} as f;sys.exit(f(sys.argv[1:]))"
    return ";".join([*path_statements(sites), run])


def argv(target: str, args: list[str]) -> list[str]:
    """The command line running ``target`` (``module:function``) leanly with ``args``."""
    # the package directories we see (a launcher for another interpreter appends ours):
    # PyYAML, for a config file, is found where we found it
    sites = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    return [sys.executable, "-I", "-S", "-c", boot(target, sites), *args]


def reexec(target: str, args: list[str]) -> None:
    """Become the lean form of ``target`` unless we already are (then return)."""
    if sys.flags.no_site or os.environ.get("EPOLLSHIM_NO_REEXEC") == "1":
        return
    command = argv(target, args)
    os.execv(command[0], command)
