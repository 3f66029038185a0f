"""Configuration: built-in defaults, optionally overridden by one YAML file.

Rule 1: this is the only module that imports ``yaml``, and only inside
``load`` when a file is actually given (``import yaml`` costs ~1.2 MB).
Rule 2: an unknown key or a value of the wrong type is a ``ConfigError`` that
names the file and the dotted key; nothing is started after one.
Rule 3: ``log.destination`` is ``state-dir``, ``stderr`` or an absolute path.
A relative one would be opened against the shim's cwd (the bundle or the
process dir), not the user's, so it is refused at load like a bad value.
Every key and its default is documented in ``conf/epollshim.yaml``; a test
loads that file and checks it equals ``DEFAULTS``.
"""

# key -> default; the type of the default is the type a value must have
# (an int is accepted where a float is expected).
DEFAULTS: dict[str, dict[str, object]] = {
    "runtime": {
        "path": "runc",  # the OCI runtime binary: a path or a name looked up in PATH
        "root": "",  # runc --root; "" = runc's own default (/run/runc)
    },
    "io": {
        "buffer_size": 65536,  # bytes moved per read/splice on a relayed stream
    },
    "drain": {
        "deadline": 5.0,  # seconds to drain a process's output after it exits
    },
    "log": {
        "level": "info",  # debug | info | warn | error
        "format": "json",  # json | text
        "destination": "state-dir",  # state-dir (shim-log.json) | stderr | an absolute path
    },
    "v2": {
        "group_key": "io.kubernetes.cri.sandbox-id",  # annotation grouping containers in one shim
        "socket_dir": "/run/containerd/s",  # where the ttrpc sockets go
    },
}

CHOICES: dict[str, tuple[str, ...]] = {
    "log.level": ("debug", "info", "warn", "error"),
    "log.format": ("json", "text"),
}

# key -> the words it accepts besides an absolute path (Rule 3)
ABSOLUTE: dict[str, tuple[str, ...]] = {
    "log.destination": ("state-dir", "stderr"),
}


class ConfigError(Exception):
    """The configuration file is wrong; the message names the file and key."""


Config = dict[str, dict[str, object]]


def defaults() -> Config:
    """A fresh copy of DEFAULTS (values are immutable: ``copy`` costs ~0.15 MB a shim)."""
    return {section: dict(values) for section, values in DEFAULTS.items()}


def load(path: str | None) -> Config:
    """Defaults, overridden by the YAML file at ``path`` if one is given."""
    config = defaults()
    if path is None:
        return config
    try:
        import yaml  # only here: see Rule 1
    except ModuleNotFoundError:
        # A lean shim (``python -I -S``, epollshim.lean) sees site-packages only
        # when PyYAML sits beside our package, not with an editable install: add
        # them now, when a config file actually needs yaml.
        import site

        for directory in site.getsitepackages():
            site.addsitedir(directory)
        import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(str(e))}") from e
    if data is None:
        return config
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    for section, values in data.items():
        if section not in DEFAULTS:
            raise ConfigError(f"{path}: unknown key '{section}'")
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: '{section}' must be a mapping")
        for key, value in values.items():
            config[section][key] = _check(path, section, key, value)
    return config


def _check(path: str, section: str, key: str, value: object) -> object:
    dotted = f"{section}.{key}"
    if key not in DEFAULTS[section]:
        raise ConfigError(f"{path}: unknown key '{dotted}'")
    default = DEFAULTS[section][key]
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not type(default):
        want, got = type(default).__name__, type(value).__name__
        raise ConfigError(f"{path}: '{dotted}' must be a {want}, got {got} {value!r}")
    if isinstance(value, int | float) and value <= 0:
        raise ConfigError(f"{path}: '{dotted}' must be positive, got {value!r}")
    choices = CHOICES.get(dotted)
    if choices and value not in choices:
        raise ConfigError(f"{path}: '{dotted}' must be one of {', '.join(choices)}, got {value!r}")
    if dotted in ABSOLUTE and value not in ABSOLUTE[dotted] and not str(value).startswith("/"):
        words = ", ".join(ABSOLUTE[dotted])
        raise ConfigError(f"{path}: '{dotted}' must be {words} or an absolute path, got {value!r}")
    return value


def _one_line(text: str) -> str:
    return " ".join(text.split())
