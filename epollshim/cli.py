"""Command line: the shim itself, and the tools around it.

  epollshim [--trace-states[=text|json]] [--config FILE] [--runtime PATH]
            [--runtime-root DIR] STATE_DIR ID           seed form, cwd = bundle
  epollshim [options] ID BUNDLE RUNTIME                 0.2.x form, cwd = process dir
  epollshim run [--tty] [--bundle DIR] [--trace-states[=text|json]]
                [--runtime-root DIR] [--config FILE] -- CMD...
  epollshim attach STATE_DIR
  epollshim bundle DIR [--tty] [-- CMD...]
  epollshim install-launchers [--python PATH|auto] [DIR]
                                        lean launchers for the binaries (default /usr/local/bin)
  epollshim image import [--address SOCK] [--namespace NS]
                                        our busybox image into containerd (default, k8s.io)

Rule: the shim path imports only what it needs (no argparse: it and its
imports cost memory in every shim); the tools import what they like, lazily.
Exit codes of the shim: see ``epollshim.v0.shim``.
"""

import os
import sys

USAGE = __doc__.split("\n\n")[1]


class UsageError(Exception):
    pass


def parse_shim_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Options (``--name value`` or ``--name=value``) and positional arguments."""
    takes_value = {"--config", "--runtime", "--runtime-root"}
    opts: dict[str, str] = {}
    args: list[str] = []
    it = iter(argv)
    for arg in it:
        name, eq, value = arg.partition("=")
        if arg == "--":
            args.extend(it)
        elif name == "--trace-states":
            if eq and value not in ("text", "json"):
                raise UsageError(f"--trace-states takes text or json, not {value!r}")
            opts[name] = value or "text"
        elif name in takes_value:
            if not eq:
                value = next(it, "")
            if not value:
                raise UsageError(f"{name} needs a value")
            opts[name] = value
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown option {arg}")
        else:
            args.append(arg)
    return opts, args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("run", "attach"):
        from epollshim.v0 import caller

        return caller.main(argv)
    if argv and argv[0] == "bundle":
        from epollshim import bundle

        return bundle.main(argv[1:])
    if argv and argv[0] == "image":
        from epollshim.tools import image

        return image.cli_main(argv[1:])
    if argv and argv[0] == "install-launchers":
        from epollshim.tools import launchers

        return launchers.install_launchers(argv[1:])
    if argv and argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0
    from epollshim import lean

    lean.reexec("epollshim.cli:shim_main", argv)
    return shim_main(argv)


def shim_main(argv: list[str]) -> int:
    from epollshim.v0.shim import EXIT_INTERNAL, EXIT_SETUP, EXIT_USAGE

    try:
        opts, args = parse_shim_args(argv)
        if len(args) not in (2, 3):
            raise UsageError(f"expected STATE_DIR ID or ID BUNDLE RUNTIME, got {len(args)} args")
    except UsageError as e:
        _early_error(f"usage: {e}\n{USAGE}", "shim-log.json" if len(argv) == 3 else None)
        return EXIT_USAGE
    from epollshim import config as configmod
    from epollshim.log import Log
    from epollshim.v0.shim import Options, SeedShim, check_state_dir
    from epollshim.v0.spec import SetupError

    cwd = os.getcwd()
    if len(args) == 2:
        state_dir, id_ = os.path.abspath(args[0]), args[1]
        shim_opts = Options(state_dir=state_dir, id=id_, bundle=cwd, form="seed")
    else:
        id_, bundle, runtime = args
        shim_opts = Options(state_dir=cwd, id=id_, bundle=os.path.abspath(bundle), form="0.2")
        shim_opts.runtime = runtime
    log = Log()
    log.add_sink(2, "text", "warn")
    try:
        check_state_dir(shim_opts.state_dir)
        cfg = configmod.load(opts.get("--config"))
        _configure_log(log, cfg, shim_opts.state_dir)
    except (configmod.ConfigError, SetupError) as e:
        log.error(str(e))
        _early_error(None, os.path.join(shim_opts.state_dir, "shim-log.json"), str(e))
        return EXIT_SETUP
    shim_opts.runtime = opts.get("--runtime") or (
        shim_opts.runtime if shim_opts.form == "0.2" else str(cfg["runtime"]["path"])
    )
    shim_opts.runtime_root = opts.get("--runtime-root", str(cfg["runtime"]["root"]))
    shim_opts.buffer_size = int(str(cfg["io"]["buffer_size"]))
    shim_opts.drain_deadline = float(str(cfg["drain"]["deadline"]))
    if "--trace-states" in opts:
        from epollshim.trace import make_tracer

        shim_opts.trace = make_tracer(opts["--trace-states"])
    shim = SeedShim(shim_opts, log)
    try:
        return shim.run()
    except SetupError as e:
        log.error(str(e))
        for record in shim.recorder.records:
            log.info(f"flight recorder: {record!r}")
        return EXIT_SETUP
    except Exception as e:  # a bug: leave its traceback and the recent transitions behind
        import traceback

        where = "".join(traceback.format_exception(e)).strip().replace("\n", " | ")
        log.error(f"internal error: {where}")
        for record in shim.recorder.records:
            log.error(f"flight recorder: {record!r}")
        return EXIT_INTERNAL
    finally:
        shim.close()


def _configure_log(log: object, cfg: dict[str, dict[str, object]], state_dir: str) -> None:
    from epollshim.log import Log

    assert isinstance(log, Log)
    section = cfg["log"]
    level, fmt, dest = str(section["level"]), str(section["format"]), str(section["destination"])
    if dest == "stderr":
        log.sinks = [(fd, f, t) for fd, f, t in log.sinks if fd != 2]
        log.add_sink(2, fmt, level)
        return
    path = os.path.join(state_dir, "shim-log.json") if dest == "state-dir" else dest
    try:
        log.open_file(path, fmt, level)
    except OSError as e:  # EROFS, EACCES, ENOENT...: the shim cannot keep its log there
        from epollshim.v0.spec import SetupError

        raise SetupError(f"{path}: cannot open the shim log: {e.strerror}") from e


def _early_error(usage: str | None, log_path: str | None, message: str | None = None) -> None:
    """Before the log exists: usage text on stderr, one JSON record if we know where."""
    if usage:
        sys.stderr.write(f"epollshim: {usage}\n")
    if log_path and message is None and usage:
        message = usage.splitlines()[0]
    if log_path and message:
        try:
            from epollshim.log import Log

            log = Log()
            log.open_file(log_path, "json", "error")
            log.error(message)
        except OSError:  # ENOENT, EROFS, EACCES: no state dir, or not writable; stderr said it
            pass
