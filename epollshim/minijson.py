"""JSON for the shim processes without the ``json`` module.

``import json`` costs ~1.2 MB per shim (it imports ``re``, which imports ``enum``). What a
shim reads (config.json, process.json, runc's log lines, options.json, ``runc ps`` output)
and writes (log and trace lines, options.json, process.json for ``runc exec``) is handled
here, exactly as ``json.loads``/``json.dumps`` with their default arguments do:

- ``dumps`` is the stdlib's own C encoder (``_json``: no ``re``), same separators,
  ``ensure_ascii``, ``NaN``/``Infinity`` and the same ``TypeError`` for other objects.
- ``loads`` reads a document with the stdlib's own C scanner (``_json.make_scanner``, what
  ``json.loads`` runs: ~0.05 ms for a 3 KB config.json, where a parser in Python takes
  ~1.3 ms on the first call, on the way to ``runc create``). The scanner reports errors
  through ``json.decoder``, which we do not import, so on any error ``loads`` runs
  ``parse``, a small parser: the grammar the stdlib accepts (also ``NaN``, ``Infinity``,
  ``-Infinity``, lone surrogate escapes, duplicate keys: last wins), and a
  ``JSONDecodeError`` (a ``ValueError``) with the stdlib's ``msg``, ``pos``, ``lineno`` and
  ``colno`` on anything it rejects. Tests check ``loads``, ``parse`` and ``dumps`` against
  ``json``.
- Nesting (the one difference): in ``parse`` open arrays and objects wait on a list, not on
  Python's call stack, and at most ``MAX_DEPTH`` (512) may be open at once; one more ``[``
  or ``{`` is a ``JSONDecodeError`` at its position, never a ``RecursionError``. The C
  scanner recurses, so ``loads`` gives it only documents with at most ``MAX_DEPTH``
  brackets in all (strings included), which cannot nest deeper. ``json.loads`` has
  no limit of its own: it raises ``RecursionError`` near the interpreter's recursion limit
  (1000, less the caller's stack), and so does ``dumps`` (the C encoder). 512 stays clear
  of both: whatever ``loads`` returns, ``json.loads`` reads alike and ``dumps`` can write
  back (v2 rewrites config.json). Go's encoding/json allows 10000; a real config.json
  nests fewer than 10 levels.
"""

# typing costs ~0.7 MB per shim at run time; mypy treats any TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_DEPTH = 512  # arrays and objects open at once; see the module docstring

_WS = " \t\n\r"
_DIGITS = "0123456789"
_HEX = "0123456789abcdefABCDEF"
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_WORDS = (
    ("null", None),
    ("true", True),
    ("false", False),
    ("NaN", float("nan")),
    ("Infinity", float("inf")),
    ("-Infinity", float("-inf")),
)


class JSONDecodeError(ValueError):
    """As ``json.JSONDecodeError``: ``msg`` and where (``pos``, ``lineno``, ``colno``)."""

    def __init__(self, msg: str, doc: str, pos: int) -> None:
        lineno = doc.count("\n", 0, pos) + 1
        colno = pos - doc.rfind("\n", 0, pos)
        super().__init__(f"{msg}: line {lineno} column {colno} (char {pos})")
        self.msg, self.doc, self.pos, self.lineno, self.colno = msg, doc, pos, lineno, colno


def _not_serializable(o: object) -> object:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def dumps(obj: object) -> str:
    """``json.dumps(obj)``: what ``json.JSONEncoder.encode`` does with its defaults.

    A flat object of plain values (see ``_plain``; the v2 shim's ``options.json`` at Create)
    is written here, without importing the C encoder (~0.3 ms on the way to runc create).
    """
    if type(obj) is dict:
        flat = _flat(obj)
        if flat is not None:
            return flat
    import _json  # the first other dumps pays for it

    if isinstance(obj, str):
        return str(_json.encode_basestring_ascii(obj))
    # markers (fresh: circular references), default, encoder, indent, key separator,
    # item separator, sort_keys, skipkeys, allow_nan
    encode = _json.make_encoder(
        {}, _not_serializable, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    return "".join(encode(obj, 0))


def _plain(value: object) -> str | None:
    """``value`` as json writes it, if it is None, a bool, an int or a string of printable
    ASCII without quotes or backslashes (nothing to escape); else None."""
    if value is None or value is True or value is False:
        return "null" if value is None else "true" if value else "false"
    if type(value) is int:
        return int.__repr__(value)
    if (
        type(value) is str
        and value.isascii()
        and value.isprintable()
        and '"' not in value
        and "\\" not in value
    ):
        return f'"{value}"'
    return None


def _flat(obj: dict[object, object]) -> str | None:
    """``obj`` as json writes it, if its keys are strings and its keys and values plain."""
    parts = []
    for key, value in obj.items():
        k = _plain(key) if type(key) is str else None
        v = _plain(value)
        if k is None or v is None:
            return None
        parts.append(f"{k}: {v}")
    return "{" + ", ".join(parts) + "}"


class _Context:
    """What ``_json.make_scanner`` reads from ``json.JSONDecoder``, with json's defaults."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int
    parse_constant = {w: v for w, v in _WORDS if isinstance(v, float)}.__getitem__


_scan: "Any" = None  # the C scanner, made at the first loads


def loads(text: str | bytes | bytearray) -> "Any":
    """``json.loads(text)``; bytes must be UTF-8 (a BOM is allowed, as json allows it)."""
    global _scan
    if isinstance(text, str):
        doc = text
    else:  # what decode("utf-8-sig") does, without importing that codec (~0.25 ms)
        raw = bytes(text)
        doc = (raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw).decode()
    if doc.count("[") + doc.count("{") <= MAX_DEPTH:  # then nothing nests deeper
        if _scan is None:
            import _json  # dumps imports it too

            _scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # typeshed: itself
        try:
            value, end = _scan(doc, _skip(doc, 0))
        except Exception:  # StopIteration or SystemError: its errors need json.decoder
            pass
        else:
            if _skip(doc, end) == len(doc):  # else "Extra data", from parse
                return value
    return parse(doc)


def _skip(doc: str, i: int) -> int:
    """Where the whitespace json allows, starting at ``i``, ends."""
    while i < len(doc) and doc[i] in _WS:
        i += 1
    return i


def parse(doc: str) -> "Any":
    """The small parser alone: what ``loads`` uses for every error and for documents with
    more than ``MAX_DEPTH`` brackets (the tests hold it to json too)."""
    if doc.startswith("\ufeff"):
        raise JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", doc, 0)
    parser = _Parser(doc)
    value = parser.value(parser.skip(0))
    end = parser.skip(parser.end)
    if end != len(doc):
        raise JSONDecodeError("Extra data", doc, end)
    return value


class _Parser:
    """Each method parses what starts at ``i`` and sets ``self.end`` just after it."""

    def __init__(self, doc: str) -> None:
        self.doc = doc
        self.end = 0
        self.result: object = None  # the outermost value, once ``value`` completed it

    def fail(self, msg: str, pos: int) -> JSONDecodeError:
        return JSONDecodeError(msg, self.doc, pos)

    def skip(self, i: int) -> int:
        return _skip(self.doc, i)

    def value(self, i: int) -> object:
        """The value at ``i``; open arrays and objects wait on ``stack`` (``[container, key]``)."""
        doc, stack = self.doc, list[list["Any"]]()
        while True:
            c = doc[i : i + 1]
            if c == "[" or c == "{":
                if len(stack) == MAX_DEPTH:
                    raise self.fail(f"Arrays and objects nested deeper than {MAX_DEPTH}", i)
                item: object = [] if c == "[" else {}
                j = self.skip(i + 1)
                if doc[j : j + 1] != ("]" if c == "[" else "}"):
                    stack.append([item, None])
                    i = j if c == "[" else self.member_name(j, stack[-1])
                    continue
                self.end = j + 1  # empty: complete already
            else:
                item = self.scalar(i)
            i = self.close(stack, item)
            if i < 0:
                return self.result

    def close(self, stack: list[list["Any"]], value: object) -> int:
        """Add ``value`` to the innermost open container and close those that end here.

        Returns where the next value starts, or -1 once the outermost value is complete
        (it is then ``self.result``).
        """
        doc = self.doc
        while stack:
            frame = stack[-1]
            container = frame[0]
            if isinstance(container, list):
                container.append(value)
            else:
                container[frame[1]] = value  # a duplicate key: the last one wins, as in json
            i = self.skip(self.end)
            c = doc[i : i + 1]
            if c == ("]" if isinstance(container, list) else "}"):
                stack.pop()
                self.end, value = i + 1, container
                continue
            if c != ",":
                raise self.fail("Expecting ',' delimiter", i)
            i = self.skip(i + 1)
            return i if isinstance(container, list) else self.member_name(i, frame)
        self.result = value
        return -1

    def member_name(self, i: int, frame: list["Any"]) -> int:
        """Read an object member's name and its ``:`` at ``i``; returns where its value starts."""
        doc = self.doc
        if doc[i : i + 1] != '"':
            raise self.fail("Expecting property name enclosed in double quotes", i)
        frame[1] = self.string(i + 1)
        i = self.skip(self.end)
        if doc[i : i + 1] != ":":
            raise self.fail("Expecting ':' delimiter", i)
        return self.skip(i + 1)

    def scalar(self, i: int) -> object:
        """A string, number or word (``null``, ``true``, ``NaN``...) at ``i``."""
        doc = self.doc
        c = doc[i : i + 1]  # "" at the end
        if c == '"':
            return self.string(i + 1)
        if c and c in "-0123456789":
            number = self.number(i)
            if number is not None:
                return number
        for word, value in _WORDS:
            if doc.startswith(word, i):
                self.end = i + len(word)
                return value
        raise self.fail("Expecting value", i)

    def number(self, i: int) -> int | float | None:
        """``-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][-+]?[0-9]+)?`` at ``i``, or None."""
        doc, start = self.doc, i
        if doc[i] == "-":
            i += 1
        if not self._digit(i):
            return None  # "-Infinity" or not a value
        i = i + 1 if doc[i] == "0" else self._digits(i)
        integer = True
        if doc[i : i + 1] == "." and self._digit(i + 1):
            i, integer = self._digits(i + 1), False
        if doc[i : i + 1] in ("e", "E"):
            j = i + 2 if doc[i + 1 : i + 2] in ("+", "-") else i + 1
            if self._digit(j):
                i, integer = self._digits(j), False
        self.end = i
        return int(doc[start:i]) if integer else float(doc[start:i])

    def _digit(self, i: int) -> bool:
        return i < len(self.doc) and self.doc[i] in _DIGITS

    def _digits(self, i: int) -> int:
        while self._digit(i):
            i += 1
        return i

    def string(self, i: int) -> str:
        """The string whose opening quote is just before ``i``."""
        doc, start, parts = self.doc, i - 1, []
        while True:
            j = doc.find('"', i)
            if j < 0:
                j = len(doc)
            chunk = doc[i:j]
            if "\\" in chunk or min(chunk, default=" ") < " ":  # the slow way, char by char
                j = i
                while doc[j] not in '"\\' and doc[j] >= " ":
                    j += 1
                chunk = doc[i:j]
            parts.append(chunk)
            if j >= len(doc):
                raise self.fail("Unterminated string starting at", start)
            c = doc[j]
            if c == '"':
                self.end = j + 1
                return "".join(parts)
            if c != "\\":
                raise self.fail("Invalid control character at", j)
            c = doc[j + 1 : j + 2]
            if not c:
                raise self.fail("Unterminated string starting at", start)
            if c != "u":
                if c not in _ESCAPES:
                    raise self.fail("Invalid \\escape", j)
                parts.append(_ESCAPES[c])
                i = j + 2
                continue
            code = self._hex4(j)
            i = j + 6
            if 0xD800 <= code <= 0xDBFF and doc.startswith("\\u", i):
                low = self._hex4(i)
                if 0xDC00 <= low <= 0xDFFF:
                    code = 0x10000 + ((code - 0xD800) << 10 | (low - 0xDC00))
                    i += 6
            parts.append(chr(code))

    def _hex4(self, j: int) -> int:
        """The value of ``\\uXXXX`` at ``j`` (the backslash)."""
        digits = self.doc[j + 2 : j + 6]
        if len(digits) != 4 or not all(d in _HEX for d in digits):
            raise self.fail("Invalid \\uXXXX escape", j + 1)
        return int(digits, 16)
