"""``containerd-shim-epollshim-v2``: the command line containerd runs (spec section 2).

  <bin> -namespace NS -address GRPC -publish-binary BIN -id ID [-debug] start
  <bin> -namespace NS -address GRPC -publish-binary BIN -id ID -bundle B delete
  <bin> -v

Rules:
- Go ``flag`` syntax: ``-name value``, ``-name=value``, ``--name value``; booleans
  (``-debug``, ``-v``) take no value (``-debug=false`` is accepted).
- This module imports only ``os`` and ``sys``: ``start`` runs for every container and
  containerd waits on it, so each subcommand imports its own module lazily (the forked
  daemon's, in ``import_daemon``, with ``gc``, built in).
- ``start`` and ``delete`` end with ``os._exit`` (no interpreter teardown to wait for).
- ``start`` prints nothing but the address; errors go to stderr with a non-zero status
  (containerd shows "<output>: exit status N").
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

VALUE_FLAGS = ("namespace", "address", "publish-binary", "id", "bundle", "socket", "fd")
BOOL_FLAGS = ("debug", "v")
VERSION = "epollshim v2 (containerd runtime v2 shim, ttrpc)"


class UsageError(Exception):
    pass


class Flags:
    """The parsed command line: flag values by name, and the action (start|delete|"")."""

    __slots__ = ("action", "values")

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.action = ""

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def flag(self, name: str) -> bool:
        return self.values.get(name, "false") not in ("", "false", "0")

    def argv(self) -> list[str]:
        """Back to a command line (for the daemon's exec)."""
        out: list[str] = []
        for name, value in self.values.items():
            out.append(f"-{name}={value}")
        return out


def parse(argv: list[str]) -> Flags:
    flags = Flags()
    it = iter(argv)
    for arg in it:
        if not arg.startswith("-") or arg in ("-", "--"):
            if flags.action:
                raise UsageError(f"unexpected argument {arg!r} after {flags.action!r}")
            flags.action = arg
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if name in BOOL_FLAGS:
            flags.values[name] = value if eq else "true"
        elif name in VALUE_FLAGS:
            if not eq:
                following = next(it, None)
                if following is None:
                    raise UsageError(f"flag needs an argument: -{name}")
                value = following
            flags.values[name] = value
        else:
            raise UsageError(f"flag provided but not defined: -{name}")
    return flags


def daemon_failed(e: BaseException) -> int:
    """A bug in the forked daemon: one line in containerd's log (its stderr); the status."""
    os.write(2, f"containerd-shim-epollshim-v2 daemon: {e!r}\n".encode())
    return 1


# The daemon's imports come from its code pack when there is a fresh one (codepack.py).
DAEMON_MODULE = "epollshim.v2.daemon"


def forget(module: str) -> None:
    """Drop ``module`` (imported, never needed again) from ``sys.modules`` and from its
    package, so its code and objects go (the forked daemon: ``start``, ``codepack``). Its
    namespace is emptied too: its functions and it refer to each other, so without that
    only a collection would free them."""
    package, _, name = module.rpartition(".")
    gone = sys.modules.pop(module, None)
    vars(sys.modules[package]).pop(name, None)
    if gone is not None:
        vars(gone).clear()


def import_daemon() -> "tuple[Callable[[Flags, int], int], int]":
    """The daemon's ``serve``, and how many of the modules it took the code pack served.

    The garbage collector is off while they import: they make ~8000 objects that live as
    long as the daemon, and its collections took ~1.6 ms of the ~15 ms (the first of them
    also walks, and so copies, pages ``start`` left us). Afterwards everything is frozen
    (later collections skip it) and the collector is on again. The standard library's
    modules come first, followed by one young collection: they leave garbage behind (the
    pure-Python classes of ``collections`` and ``operator`` their C versions replace), which
    would otherwise be frozen (~30 KiB more private memory)."""
    import gc  # built in

    from epollshim import codepack

    pack = codepack.load(codepack.pack_path(DAEMON_MODULE))
    gc.disable()
    try:
        import selectors  # noqa: F401  # the standard library's part (see above)

        gc.collect(0)
        from epollshim.v2.daemon import serve
    finally:
        codepack.unload(pack)
        forget("epollshim.codepack")  # start-up is over: ~20 KiB of code
        gc.freeze()
        gc.enable()
    return serve, pack.served if pack else 0


def serve_forked(flags: Flags) -> int:
    """The daemon forked by ``start``: serve the listening socket ``-fd`` until shutdown."""
    try:
        serve, _ = import_daemon()
        return serve(flags, int(flags.get("fd")))
    except BaseException as e:
        return daemon_failed(e)


def main() -> None:
    try:
        flags = parse(sys.argv[1:])
        if flags.flag("v"):
            print(VERSION)
            sys.exit(0)
        if flags.action not in ("start", "delete"):
            raise UsageError(f"expected start or delete, got {flags.action or 'nothing'!r}")
        for name in ("namespace", "id"):
            if not flags.get(name):
                raise UsageError(f"-{name} is required")
    except UsageError as e:
        os.write(2, f"containerd-shim-epollshim-v2: {e}\n".encode())
        sys.exit(2)
    # os._exit: everything went out with os.write, and skipping the interpreter's teardown
    # is time containerd would wait for (it runs both per container).
    if flags.action == "start":
        from epollshim.v2 import start

        status = start.run(flags)
        if status != start.DAEMON:
            os._exit(status)
        # the forked daemon: nothing of ``start`` runs again (~40 KiB of code)
        del start
        forget("epollshim.v2.start")
        os._exit(serve_forked(flags))
    from epollshim.v2.delete import run as delete

    os._exit(delete(flags))
