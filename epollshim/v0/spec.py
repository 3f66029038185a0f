"""Reading what the shim must run: ``config.json`` (Form B) or ``process.json`` (Form A).

Rule: every problem is a ``SetupError`` whose message says which file and what
is wrong with it (missing, not JSON with line/column, wrong type), so the
caller gets one line that points at the fault.
Rule 2: a field we act on is checked for its JSON type before it is used, never
converted with ``int()``/``bool()`` (``bool("false")`` is True). What runc would
refuse is refused here first, naming the field: a ``consoleSize`` width or
height is an integer from 0 to 65535 (the kernel's ``struct winsize`` holds
16 bits; runc would cut a larger one down to 16 bits).
"""

import os

from epollshim import minijson


class SetupError(Exception):
    """Bad input from whoever started the shim (bundle, FIFOs, JSON): exit 1."""


class ProcessSpec:
    """The parts of an OCI process (plus 0.2.x members) the shim acts on."""

    __slots__ = (
        "console_size",
        "exec",
        "no_pivot",
        "private_pidns",
        "runtime_args",
        "stderr",
        "stdin",
        "stdout",
        "terminal",
    )

    def __init__(self) -> None:
        self.terminal = False
        self.console_size: tuple[int, int] | None = None  # (cols, rows)
        self.exec = False
        self.stdin = self.stdout = self.stderr = os.devnull
        self.runtime_args: list[str] = []
        self.no_pivot = False
        self.private_pidns = True


def read_json(path: str, what: str) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            data = minijson.loads(f.read())
    except FileNotFoundError as e:
        raise SetupError(f"{path}: {what} not found") from e
    except IsADirectoryError as e:
        raise SetupError(f"{path}: {what} is a directory") from e
    except PermissionError as e:
        raise SetupError(f"{path}: {what} not readable: {e.strerror}") from e
    except minijson.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        raise SetupError(f"{path}: {what} is not valid JSON: {e.msg} at {where}") from e
    except UnicodeDecodeError as e:
        raise SetupError(f"{path}: {what} is not UTF-8 text") from e
    if not isinstance(data, dict):
        raise SetupError(f"{path}: {what} must be a JSON object")
    return data


def _process_fields(spec: ProcessSpec, process: object, where: str) -> None:
    if not isinstance(process, dict):
        raise SetupError(f"{where}: 'process' must be a JSON object")
    args = process.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise SetupError(f"{where}: 'process.args' must be a non-empty list of strings")
    terminal = process.get("terminal", False)
    if not isinstance(terminal, bool):
        raise SetupError(f"{where}: 'process.terminal' must be true or false")
    spec.terminal = terminal
    spec.console_size = _console_size(process.get("consoleSize"), where)


def _console_size(size: object, where: str) -> tuple[int, int] | None:
    """``process.consoleSize`` as (cols, rows); absent or null members are 0, as runc reads them."""
    if size is None:
        return None
    if not isinstance(size, dict):
        raise SetupError(f"{where}: 'process.consoleSize' must be a JSON object")
    cols, rows = (_dimension(size, name, where) for name in ("width", "height"))
    return cols, rows


def _dimension(size: dict[str, object], name: str, where: str) -> int:
    value = size.get(name)
    if value is None:
        return 0
    if type(value) is not int or not 0 <= value <= 0xFFFF:  # type(): a bool is no int here
        raise SetupError(
            f"{where}: 'process.consoleSize.{name}' must be an integer "
            f"from 0 to 65535, got {value!r:.40}"
        )
    return value


def _flag(data: dict[str, object], name: str, where: str) -> bool:
    value = data.get(name, False)
    if value is None:  # Go's encoding/json writes nothing or false; null reads as false
        return False
    if not isinstance(value, bool):
        raise SetupError(f"{where}: '{name}' must be true or false, got {value!r:.40}")
    return value


def _has_private_pidns(config: dict[str, object]) -> bool:
    linux = config.get("linux")
    namespaces = linux.get("namespaces") if isinstance(linux, dict) else None
    if not isinstance(namespaces, list):
        return False
    return any(
        isinstance(ns, dict) and ns.get("type") == "pid" and not ns.get("path") for ns in namespaces
    )


def load_bundle(bundle: str) -> tuple[ProcessSpec, dict[str, object]]:
    """Form B: the process comes from ``BUNDLE/config.json``."""
    if not os.path.isdir(bundle):
        raise SetupError(f"{bundle}: bundle directory not found")
    path = os.path.join(bundle, "config.json")
    config = read_json(path, "OCI config")
    spec = ProcessSpec()
    _process_fields(spec, config.get("process"), path)
    spec.private_pidns = _has_private_pidns(config)
    return spec, config


def load_process(procdir: str, bundle: str) -> ProcessSpec:
    """Form A: ``process.json`` in the process dir (0.2.x members flattened in)."""
    path = os.path.join(procdir, "process.json")
    data = read_json(path, "process.json")
    spec = ProcessSpec()
    _process_fields(spec, data, path)
    spec.exec = _flag(data, "exec", path)
    for name in ("stdin", "stdout", "stderr"):
        value = data.get("containerd" + name.capitalize()) or os.devnull
        if not isinstance(value, str):
            raise SetupError(f"{path}: 'containerd{name.capitalize()}' must be a path")
        setattr(spec, name, value)
    runtime_args = data.get("runtimeArgs") or []
    if not isinstance(runtime_args, list) or not all(isinstance(a, str) for a in runtime_args):
        raise SetupError(f"{path}: 'runtimeArgs' must be a list of strings")
    spec.runtime_args = runtime_args
    spec.no_pivot = _flag(data, "noPivotRoot", path)
    checkpoint = data.get("checkpoint") or ""
    if checkpoint:
        # `runc restore` needs CRIU, which fails on this kernel (spec 15 L): refuse
        # plainly rather than start a fresh container in its place.
        raise SetupError(f"{path}: 'checkpoint' {checkpoint!r}: restoring is not supported")
    if not spec.exec:
        config_path = os.path.join(bundle, "config.json")
        spec.private_pidns = _has_private_pidns(read_json(config_path, "OCI config"))
    return spec
