"""Where a process's output goes: the stdout string of Create/Exec, read as runc-v2 reads it.

Pure: no IO. Imported only for a string that is not a plain absolute path (``lifecycle``):
shims that only ever see FIFO paths do not pay for the parser.

Rules (spec section 6.4; containerd 1.6 pkg/process/io.go and utils.go):
- The **stdout** string decides, parsed the way Go's ``url.Parse`` does for these cases:
  no scheme (a plain path, or empty) or ``fifo`` -> FIFO mode, the strings are paths used
  as given; ``file:///abs/path`` -> FILE; ``binary:///abs/path?k=v&...`` -> BINARY; any
  other scheme -> ``StdioError`` naming the URI (the service answers INVALID_ARGUMENT
  before anything is acquired). The scheme is case-insensitive, as in Go.
- FILE and BINARY take the percent-decoded path, which must be absolute and free of NUL;
  a host other than ``localhost`` is refused (``file://var/log/x`` means host ``var``:
  runc-v2 would silently write ``/log/x``). A query on a file URI is ignored.
- BINARY arguments: each distinct query key in order of first appearance, followed by its
  first value (``?flag`` gives ``flag`` and an empty argument, exactly as containerd 1.6
  builds them; Go's own map order is unspecified, ours is the URI's). Keys and values are
  query-unescaped (``+`` is a space). A ``;`` or a bad ``%`` escape is refused rather
  than dropped silently, as Go would.
- stderr's string is not read in FILE and BINARY modes (runc-v2 sends both streams to
  stdout's target); stdin's is always a FIFO path.
"""

from epollshim.v2.stdio import BINARY, FIFO, FILE, Output

_HEX = frozenset(b"0123456789abcdefABCDEF")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")


class StdioError(ValueError):
    """A stdio URI that names no output we can give (INVALID_ARGUMENT)."""


def parse(stdout: str) -> Output:
    """The target named by a stdout string (``StdioError`` if it names none)."""
    scheme, rest = _split_scheme(stdout)
    if not scheme:
        return Output(FIFO, stdout)  # a path, used exactly as given (no unescaping)
    if scheme not in (FIFO, FILE, BINARY):
        raise StdioError(f"unknown STDIO scheme {scheme!r} in stdio URI {stdout!r}")
    rest = rest.partition("#")[0]
    rest, _, query = rest.partition("?")
    path = _path(stdout, rest)
    if scheme == FIFO:
        return Output(FIFO, path)
    if scheme == FILE:
        return Output(FILE, path)
    return Output(BINARY, path, _args(stdout, query))


def _split_scheme(uri: str) -> tuple[str, str]:
    """(lower-cased scheme, the rest) or ("", uri); Go's getScheme and its first check."""
    for i, c in enumerate(uri):
        if c == ":":
            if i == 0:
                raise StdioError(f"stdio URI {uri!r}: missing protocol scheme")
            return uri[:i].lower(), uri[i + 1 :]
        if c not in _SCHEME_CHARS or (i == 0 and not c.isalpha()):
            break
    # no scheme: Go refuses a relative reference whose first segment has a colon
    if ":" in uri.partition("/")[0]:
        raise StdioError(f"stdio URI {uri!r}: first path segment cannot contain a colon")
    return "", uri


def _path(uri: str, rest: str) -> str:
    if rest.startswith("//"):
        host, slash, rest = rest[2:].partition("/")
        if host not in ("", "localhost"):
            raise StdioError(
                f"stdio URI {uri!r}: host {host!r} is not supported (write file:///path)"
            )
        rest = slash + rest
    path = _unescape(uri, rest, plus=False)
    if not path.startswith("/"):
        raise StdioError(f"stdio URI {uri!r}: the path must be absolute")
    if "\0" in path:
        raise StdioError(f"stdio URI {uri!r}: the path contains a NUL byte")
    return path


def _args(uri: str, query: str) -> tuple[str, ...]:
    """Each distinct key, then its first value: containerd's NewBinaryCmd."""
    seen: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        if ";" in pair:
            raise StdioError(f"stdio URI {uri!r}: ';' is not a query separator")
        key, _, value = pair.partition("=")
        key, value = _unescape(uri, key, plus=True), _unescape(uri, value, plus=True)
        if "\0" in key + value:
            raise StdioError(f"stdio URI {uri!r}: an argument contains a NUL byte")
        seen.setdefault(key, value)
    return tuple(word for item in seen.items() for word in item)


def _unescape(uri: str, text: str, *, plus: bool) -> str:
    """Percent-decoding as Go's (UTF-8; undecodable bytes kept as os.fsdecode keeps them)."""
    if plus:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    raw = text.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] != 0x25:  # '%'
            out.append(raw[i])
            i += 1
            continue
        digits = raw[i + 1 : i + 3]
        if len(digits) != 2 or not all(d in _HEX for d in digits):
            bad = raw[i : i + 3].decode("utf-8", "replace")
            raise StdioError(f"stdio URI {uri!r}: bad escape {bad!r}")
        out.append(int(digits, 16))
        i += 3
    return out.decode("utf-8", "surrogateescape")
