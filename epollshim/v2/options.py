"""Runtime options of a task: the ``Create.options`` Any, decoded (spec section 6.2).

Rules:
- Pure: no IO. Accepted: no Any (defaults), ``containerd.runc.v1.Options`` and the older
  ``containerd.linux.runc.CreateOptions``; ``runtimeoptions.v1.Options`` (what ctr sends
  with ``--runtime-config-path``) is ignored. Anything else is ``OptionsError`` (the
  service answers INVALID_ARGUMENT) naming the type.
- runc's state root is ``<root>/<namespace>``, root defaulting to /run/containerd/runc,
  as runc-v2 does; the binary defaults to ``runc`` from PATH (or the config's
  ``runtime.path``).
- ``to_json``/``from_json`` is what ``Create`` writes to ``<bundle>/options.json`` so
  that the ``delete`` subcommand can find the same runc root and binary.
"""

import os

from epollshim import minijson
from epollshim.v2.messages import Options
from epollshim.v2.pb import Any, DecodeError

DEFAULT_ROOT = "/run/containerd/runc"
# the older options' full names (their classes are in messages_more, imported when sent)
CREATE_OPTIONS = "containerd.linux.runc.CreateOptions"
RUNTIME_OPTIONS = "runtimeoptions.v1.Options"


class OptionsError(ValueError):
    pass


class RuncOptions:
    __slots__ = (
        "binary",
        "criu_path",
        "io_gid",
        "io_uid",
        "no_new_keyring",
        "no_pivot_root",
        "root",
        "shim_cgroup",
        "systemd_cgroup",
    )

    def __init__(self, binary: str = "runc", root: str = DEFAULT_ROOT) -> None:
        self.binary = binary
        self.root = root
        self.criu_path = ""
        self.no_pivot_root = False
        self.no_new_keyring = False
        self.systemd_cgroup = False
        self.shim_cgroup = ""
        self.io_uid = 0
        self.io_gid = 0

    def runc_root(self, namespace: str) -> str:
        return os.path.join(self.root, namespace)

    def global_args(self) -> list[str]:
        """runc flags after --root/--log (spec 7.1 order: --criu, --systemd-cgroup)."""
        args = ["--criu", self.criu_path] if self.criu_path else []
        return args + (["--systemd-cgroup"] if self.systemd_cgroup else [])

    def create_args(self) -> list[str]:
        return (["--no-pivot"] if self.no_pivot_root else []) + (
            ["--no-new-keyring"] if self.no_new_keyring else []
        )

    def to_json(self) -> str:
        return minijson.dumps({name: getattr(self, name) for name in self.__slots__})

    @classmethod
    def from_json(cls, text: str | bytes) -> "RuncOptions":
        opts = cls()
        data = minijson.loads(text)
        if isinstance(data, dict):
            for name in cls.__slots__:
                if name in data and isinstance(data[name], type(getattr(opts, name))):
                    setattr(opts, name, data[name])
        return opts


def decode(value: Any | None, default_binary: str = "runc") -> RuncOptions:
    """The options in ``value`` (None: all defaults)."""
    opts = RuncOptions(binary=default_binary)
    if value is None or not value.type_url:
        return opts
    name = value.type_name
    try:
        if name == Options.TYPE_NAME:
            o = value.unpack(Options)
            opts.binary = o.binary_name or default_binary
            opts.root = o.root or DEFAULT_ROOT
            opts.criu_path = o.criu_path
            opts.systemd_cgroup = o.systemd_cgroup
        elif name == CREATE_OPTIONS:
            from epollshim.v2.messages_more import CreateOptions

            o2 = value.unpack(CreateOptions)
            opts.no_pivot_root, opts.no_new_keyring = o2.no_pivot_root, o2.no_new_keyring
            opts.shim_cgroup, opts.io_uid, opts.io_gid = o2.shim_cgroup, o2.io_uid, o2.io_gid
            return opts
        elif name == RUNTIME_OPTIONS:
            return opts
        else:
            raise OptionsError(f"unsupported runtime options type {value.type_url!r}")
    except DecodeError as e:
        raise OptionsError(f"malformed runtime options {value.type_url!r}: {e}") from e
    opts.no_pivot_root, opts.no_new_keyring = o.no_pivot_root, o.no_new_keyring
    opts.shim_cgroup, opts.io_uid, opts.io_gid = o.shim_cgroup, o.io_uid, o.io_gid
    return opts
