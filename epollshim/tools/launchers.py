"""``epollshim install-launchers``: the scripts containerd, podman and people run.

Install time only (never imported by a shim; ``epollshim.lean`` is the part a shim runs).
One launcher per binary: a ``#!python -IS`` script (``-ISOO`` for the v2 shim), or for the
conmon-compatible monitor a ``/bin/sh`` script that answers ``--version`` itself (podman
asks that several times per container) and ``exec``s ``python -IS`` otherwise. The
interpreter is ``choose_python``'s: by default the distribution's build of our Python
version when there is one (measured reasons in its docstring).
"""

import os
import subprocess
import sys
import sysconfig

from epollshim import lean
from epollshim.lean import PACKAGE_PARENT
from epollshim.v2.main import DAEMON_MODULE

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


# Launchers whose binary runs with ``-OO`` too (docstrings and asserts dropped): ~0.1 MB
# less private memory per shim. Not ``epollshim``, whose usage text is its docstring.
OPTIMIZED = ("containerd-shim-epollshim-v2", "epollshim-conmon")


def _sites(python: str) -> list[str]:
    """For another build of our Python version, the directories we were installed into
    (PyYAML, for a config file), to put after its own; none for ourselves."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return []
    found = dict.fromkeys(sysconfig.get_path(key) for key in ("purelib", "platlib"))
    return [site for site in found if site != PACKAGE_PARENT]


def launcher_text(target: str, python: str = sys.executable, flags: str = "-IS") -> str:
    """A launcher script that starts ``target`` leanly, with no ``site`` at all.

    pip's console scripts run ``site`` first: here that is about 100 ms and
    3 MB, paid on every container start (containerd waits for the shim's
    ``start``) and by every shim; this launcher skips it.
    """
    module, _, function = target.partition(":")
    return (
        f"#!{python} {flags}\n"  # the kernel passes one argument: flags are one word
        "# Written by `epollshim install-launchers`: starts without `site` (fast, small).\n"
        + "".join(f"{s}\n" for s in lean.path_statements(_sites(python)))
        + f"from {module} import {function}\nsys.exit({function}())\n"
    )


def sh_launcher_text(
    target: str, version: str, python: str = sys.executable, flags: str = "-IS"
) -> str:
    """A /bin/sh launcher: prints ``version`` for a lone ``--version``, else execs ``target``
    leanly (``exec`` keeps the pid, the fds and the environment the caller gave)."""
    import shlex  # install time only: shlex imports re

    boot = lean.boot(target, _sites(python))
    command = " ".join(shlex.quote(a) for a in [python, flags, "-c", boot])
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


# What a shim imports from the interpreter's own library, checked in a candidate.
_PROBE = (
    "import sys,_ctypes,_json,_socket,_struct,fcntl,select,selectors,termios;"
    "print('%d.%d' % sys.version_info[:2])"
)


def _version_of(python: str) -> str:
    """``X.Y`` of ``python`` if it runs leanly and has the modules a shim needs, else ""."""
    try:
        r = subprocess.run(
            [python, "-I", "-S", "-c", _PROBE], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def choose_python(wanted: str) -> str:
    """The interpreter the launchers run: ``wanted``, or for ``auto`` (the default) the
    distribution's build of our Python version (``/usr/bin/pythonX.Y``) when it has
    what a shim imports, else this interpreter.

    Why prefer it: Debian builds ``/usr/bin/python3.11`` statically linked, with PGO and
    LTO; a plain ``--enable-shared`` build (pyenv's default) spends more time starting
    and importing (every container start waits on both, twice) and carries libpython's
    relocated data privately (measured here: ~0.2 MB RssAnon per shim).
    """
    ours = "{}.{}".format(*sys.version_info[:2])
    if wanted and wanted != "auto":
        found = _version_of(wanted)
        if found != ours:
            raise ValueError(
                f"--python {wanted}: needs Python {ours} with the standard library"
                + (f", found {found}" if found else "")
            )
        return wanted
    candidate = f"/usr/bin/python{ours}"
    if os.path.realpath(candidate) != os.path.realpath(sys.executable) and (
        _version_of(candidate) == ours
    ):
        return candidate
    return sys.executable


def _precompile(python: str) -> bool:
    """Write the ``-OO`` bytecode of our package with ``python``; False if it could not (a
    read-only install would then compile every module at every start: no ``-OO`` there)."""
    package = os.path.join(PACKAGE_PARENT, "epollshim")
    r = subprocess.run(
        [python, "-I", "-S", "-OO", "-m", "compileall", "-q", package],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        print(f"install-launchers: no -OO (cannot compile {package}): {r.stderr.strip()}")
    return r.returncode == 0


# Code packs (epollshim.codepack) built for the launchers that run ``-OO``: launcher ->
# the module whose start-up imports its pack holds.
PACKS = {"containerd-shim-epollshim-v2": DAEMON_MODULE}


def _build_packs(python: str) -> None:
    """Write each ``PACKS`` pack with ``python -I -S -OO``, as the launcher runs it; a
    failure is only slower starts (the shim imports the normal way), so it is reported."""
    for entry in PACKS.values():
        code = (
            f"import sys;sys.path.insert(0,{PACKAGE_PARENT!r});"
            f"from epollshim import codepack as c;p=c.pack_path({entry!r});"
            f"print(p,c.build({entry!r},p))"
        )
        r = subprocess.run(
            [python, "-I", "-S", "-OO", "-c", code], capture_output=True, text=True, check=False
        )
        if r.returncode != 0:
            why = (r.stderr.strip().splitlines() or ["?"])[-1]
            print(f"install-launchers: no code pack for {entry}: {why}")
        else:
            path, count = r.stdout.split()
            print(f"code pack: {path} ({count} modules)")


USAGE = "usage: epollshim install-launchers [--python PATH|auto] [DIR]"


def install_launchers(argv: list[str]) -> int:
    """``epollshim install-launchers [--python PATH|auto] [DIR]``: write lean launchers
    (default /usr/local/bin) running ``choose_python(PATH)``."""
    wanted = "auto"
    args = list(argv)
    if args[:1] == ["--python"]:
        if len(args) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        wanted, args = args[1], args[2:]
    if len(args) > 1 or (args and args[0].startswith("-")):
        print(USAGE, file=sys.stderr)
        return 2
    directory = args[0] if args else "/usr/local/bin"
    try:
        python = choose_python(wanted)
    except ValueError as e:
        print(f"install-launchers: {e}", file=sys.stderr)
        return 2
    optimized = _precompile(python)
    print(f"interpreter: {python}{' (-OO for ' + ', '.join(OPTIMIZED) + ')' if optimized else ''}")
    if optimized:
        _build_packs(python)
    for name, target in LAUNCHERS.items():
        path = os.path.join(directory, name)
        tmp = path + ".tmp"
        flags = "-ISOO" if optimized and name in OPTIMIZED else "-IS"
        if name in SH_VERSION:
            import importlib  # install time only

            version = importlib.import_module(SH_VERSION[name]).TEXT
            text = sh_launcher_text(target, version, python, flags)
        else:
            text = launcher_text(target, python, flags)
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        print(path)
    return 0
