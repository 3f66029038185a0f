"""conmon's command line (v2.1.6's option table), parsed without argparse.

Syntax as glib's GOption reads it: ``--name VALUE``, ``--name=VALUE``, ``-c VALUE``,
``-cVALUE``; flags take no value; repeatable options (``--runtime-arg``,
``--exit-command-arg``, ``--runtime-opt``, ``--log-path``) collect a list. ``--api-version``
is a flag in conmon, so podman's ``--api-version 1`` leaves a stray ``1``, which conmon
ignores; we accept exactly that number there and refuse any other positional argument.

Rules:
* Every option conmon 2.1.6 knows is either handled (``Options``) or refused by name with
  ``UsageError`` (``UNSUPPORTED``): never accepted and ignored.
* The checks ``conmon`` makes before it starts anything are made here, with its words
  where it has some (``--cid``, ``--cuuid``, ``--runtime``, ``--exec-process-spec``...).
"""

import os


class UsageError(Exception):
    """A bad or unsupported command line: one line, naming the option."""


# option name -> (attribute, kind); kind: "flag", "str", "int", "list"
LONG: dict[str, tuple[str, str]] = {
    "api-version": ("api_version", "flag"),
    "bundle": ("bundle", "str"),
    "cid": ("cid", "str"),
    "conmon-pidfile": ("conmon_pidfile", "str"),
    "container-pidfile": ("container_pidfile", "str"),
    "pidfile": ("container_pidfile", "str"),  # conmon's deprecated spelling
    "cuuid": ("cuuid", "str"),
    "exec": ("exec", "flag"),
    "exec-attach": ("exec_attach", "flag"),
    "exec-process-spec": ("exec_process_spec", "str"),
    "exit-command": ("exit_command", "str"),
    "exit-command-arg": ("exit_args", "list"),
    "exit-delay": ("exit_delay", "int"),
    "exit-dir": ("exit_dir", "str"),
    "full-attach": ("full_attach", "flag"),
    "leave-stdin-open": ("leave_stdin_open", "flag"),
    "log-level": ("log_level", "str"),
    "log-path": ("log_paths", "list"),
    "log-size-max": ("log_size_max", "int"),
    "log-global-size-max": ("log_global_size_max", "int"),
    "log-tag": ("log_tag", "str"),
    "name": ("name", "str"),
    "no-new-keyring": ("no_new_keyring", "flag"),
    "no-pivot": ("no_pivot", "flag"),
    "no-sync-log": ("no_sync_log", "flag"),
    "persist-dir": ("persist_dir", "str"),
    "runtime": ("runtime", "str"),
    "runtime-arg": ("runtime_args", "list"),
    "runtime-opt": ("runtime_opts", "list"),
    "restore-arg": ("runtime_opts", "list"),  # conmon's deprecated spelling
    "socket-dir-path": ("socket_dir_path", "str"),
    "stdin": ("stdin", "flag"),
    "sync": ("sync", "flag"),
    "syslog": ("syslog", "flag"),
    "systemd-cgroup": ("systemd_cgroup", "flag"),
    "terminal": ("terminal", "flag"),
    "timeout": ("timeout", "int"),
    "version": ("version", "flag"),
    "trace-states": ("trace", "trace"),  # ours: --trace-states[=text|json]
}

SHORT = {
    "b": "bundle",
    "c": "cid",
    "P": "conmon-pidfile",
    "p": "container-pidfile",
    "u": "cuuid",
    "e": "exec",
    "l": "log-path",
    "n": "name",
    "0": "persist-dir",
    "r": "runtime",
    "i": "stdin",
    "s": "systemd-cgroup",
    "t": "terminal",
    "T": "timeout",
}

# Options of conmon 2.1.6 we refuse, and why (the message names the option).
UNSUPPORTED = {
    "restore": "restoring a checkpoint is not supported (CRIU fails on this kernel)",
    "sdnotify-socket": "relaying sd_notify messages is not supported",
    "seccomp-notify-socket": "seccomp notification is not supported",
    "seccomp-notify-plugins": "seccomp notification is not supported",
    "replace-listen-pid": "LISTEN_PID replacement is not supported",
}

LOG_LEVELS = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "fatal": "error",
    "panic": "error",
}


class Options:
    """What conmon's command line asked for; defaults as conmon's."""

    def __init__(self) -> None:
        self.api_version = self.exec = self.exec_attach = self.full_attach = False
        self.leave_stdin_open = self.no_new_keyring = self.no_pivot = self.no_sync_log = False
        self.stdin = self.sync = self.syslog = self.systemd_cgroup = self.terminal = False
        self.version = False
        self.bundle = self.cid = self.conmon_pidfile = self.container_pidfile = ""
        self.cuuid = self.exec_process_spec = self.exit_command = self.exit_dir = ""
        self.log_level = self.log_tag = self.name = self.persist_dir = self.runtime = ""
        self.socket_dir_path = ""
        self.trace = ""
        self.exit_delay = self.timeout = 0
        self.log_size_max = self.log_global_size_max = -1
        self.exit_args: list[str] = []
        self.log_paths: list[str] = []
        self.runtime_args: list[str] = []
        self.runtime_opts: list[str] = []
        self.k8s_log = ""  # the k8s-file path, from --log-path

    def set(self, name: str, value: str | None) -> None:
        """Apply ``--name[=value]``; ``value`` is None for a flag."""
        attr, kind = LONG[name]
        if kind == "flag":
            setattr(self, attr, True)
        elif kind == "trace":
            if value not in ("", "text", "json"):
                raise UsageError(f"--trace-states takes text or json, not {value!r}")
            self.trace = value or "text"
        elif kind == "list":
            getattr(self, attr).append(value)
        elif kind == "int":
            try:
                setattr(self, attr, int(value or ""))
            except ValueError:
                raise UsageError(f"--{name} takes an integer, not {value!r}") from None
        else:
            setattr(self, attr, value)


def _takes_value(name: str) -> bool:
    return LONG[name][1] not in ("flag", "trace")


def _long(arg: str, rest: list[str], opts: Options) -> None:
    name, eq, value = arg[2:].partition("=")
    if name in UNSUPPORTED:
        raise UsageError(f"--{name}: {UNSUPPORTED[name]}")
    if name not in LONG:
        raise UsageError(f"unknown option --{name}")
    if _takes_value(name):
        if not eq:
            if not rest:
                raise UsageError(f"--{name} needs a value")
            value = rest.pop(0)
        opts.set(name, value)
    elif LONG[name][1] == "trace":
        opts.set(name, value if eq else "")
    else:
        if eq:
            raise UsageError(f"--{name} takes no value")
        opts.set(name, None)
        if name == "api-version" and rest and rest[0].isdigit():
            rest.pop(0)  # podman's "--api-version 1": conmon reads a flag and ignores the 1


def _short(arg: str, rest: list[str], opts: Options) -> None:
    letters = arg[1:]
    while letters:
        letter, letters = letters[0], letters[1:]
        if letter not in SHORT:
            raise UsageError(f"unknown option -{letter}")
        name = SHORT[letter]
        if not _takes_value(name):
            opts.set(name, None)
            continue
        value = letters
        if not value:
            if not rest:
                raise UsageError(f"-{letter} needs a value")
            value = rest.pop(0)
        opts.set(name, value)
        return


def parse(argv: list[str]) -> Options:
    """The options of ``argv``, checked as conmon checks them; UsageError names the fault."""
    opts = Options()
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            if rest:
                raise UsageError(f"unexpected argument {rest[0]!r}")
        elif arg.startswith("--"):
            _long(arg, rest, opts)
        elif arg.startswith("-") and arg != "-":
            _short(arg, rest, opts)
        else:
            raise UsageError(f"unexpected argument {arg!r}")
    if not opts.version:
        check(opts)
    return opts


def check(opts: Options) -> None:
    """conmon's own checks (``process_cli``), and our refusals of what we do not do."""
    if not opts.cid:
        raise UsageError("Container ID not provided. Use --cid")
    if not opts.cuuid:
        raise UsageError("Container UUID not provided. Use --cuuid")
    if not opts.runtime:
        raise UsageError("Runtime path not provided. Use --runtime")
    if not os.access(opts.runtime, os.X_OK):
        raise UsageError(f"Runtime path {opts.runtime} is not valid")
    if opts.exec and not opts.exec_process_spec:
        raise UsageError("Exec process spec path not provided. Use --exec-process-spec")
    if opts.exec_attach and not opts.exec:
        raise UsageError("Attach can only be specified with exec")
    if opts.exit_delay < 0:
        raise UsageError("Delay before invoking exit command must be greater than or equal to 0")
    if opts.log_level and opts.log_level not in LOG_LEVELS:
        raise UsageError(f"--log-level: unknown level {opts.log_level!r}")
    cwd = os.getcwd()
    if not opts.bundle and not opts.exec:
        opts.bundle = cwd
    if not opts.container_pidfile:
        opts.container_pidfile = os.path.join(cwd, f"pidfile-{opts.cid}")
    if opts.bundle and not opts.full_attach:
        raise UsageError(
            "an attach socket under --socket-dir-path is not supported: pass --full-attach"
        )
    _log_drivers(opts)


DRIVERS = ("none", "off", "null", "k8s-file", "journald", "passthrough")


def _log_drivers(opts: Options) -> None:
    """``--log-path DRIVER:PATH``, or a bare PATH (k8s-file); conmon's driver names."""
    if not opts.log_paths:
        raise UsageError("Log driver not provided. Use --log-path")
    for config in opts.log_paths:
        driver, colon, path = config.partition(":")
        if not colon and driver not in DRIVERS:
            driver, path = "k8s-file", driver  # a bare path: the k8s-file driver
        elif not driver:
            driver = "k8s-file"  # ":PATH"
        if driver in ("none", "off", "null"):
            continue
        if driver == "k8s-file":
            if not path:
                raise UsageError("k8s-file requires a filename")
            opts.k8s_log = path
        elif driver in ("journald", "passthrough"):
            raise UsageError(f"--log-path {driver}: the {driver} log driver is not supported")
        else:
            raise UsageError(f"No such log driver {driver}")
    if opts.k8s_log and opts.log_tag:
        raise UsageError("k8s-file doesn't support --log-tag")


def runc_log(runtime_args: list[str], default: str) -> tuple[str, list[str]]:
    """(runc's ``--log`` path, the other global args) from podman's ``--runtime-arg``s.

    Our ``Runtime`` always passes ``--log PATH --log-format json`` (it reads runc's errors
    there), so podman's own ``--log``/``--log-format`` become those.
    """
    path, rest = default, []
    args = iter(runtime_args)
    for arg in args:
        name, eq, value = arg.partition("=")
        if name == "--log":
            path = value if eq else next(args, default)
        elif name == "--log-format":
            if not eq:
                next(args, None)
        else:
            rest.append(arg)
    return path, rest
