"""JSON for the shim processes without the ``json`` module.

``import json`` costs ~1.2 MB per shim (it imports ``re``, which imports ``enum``). What a
shim reads (config.json, process.json, runc's log lines, options.json, ``runc ps`` output)
and writes (log and trace lines, options.json, process.json for ``runc exec``) is handled
here, exactly as ``json.loads``/``json.dumps`` with their default arguments do:

- ``dumps`` is the stdlib's own C encoder (``_json``: no ``re``), same separators,
  ``ensure_ascii``, ``NaN``/``Infinity`` and the same ``TypeError`` for other objects.
- ``loads`` is a small recursive-descent parser: the grammar the stdlib accepts (also
  ``NaN``, ``Infinity``, ``-Infinity``, lone surrogate escapes, duplicate keys: last wins),
  and a ``JSONDecodeError`` (a ``ValueError``) with the stdlib's ``msg``, ``pos``,
  ``lineno`` and ``colno`` on anything it rejects. Tests check both against ``json``.
"""

import _json

# typing costs ~0.7 MB per shim at run time; mypy treats any TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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
    """``json.dumps(obj)``: what ``json.JSONEncoder.encode`` does with its defaults."""
    if isinstance(obj, str):
        return str(_json.encode_basestring_ascii(obj))
    # markers (fresh: circular references), default, encoder, indent, key separator,
    # item separator, sort_keys, skipkeys, allow_nan
    encode = _json.make_encoder(
        {}, _not_serializable, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    return "".join(encode(obj, 0))


def loads(text: str | bytes | bytearray) -> "Any":
    """``json.loads(text)``; bytes must be UTF-8 (a BOM is allowed, as json allows it)."""
    doc = text if isinstance(text, str) else bytes(text).decode("utf-8-sig")
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

    def fail(self, msg: str, pos: int) -> JSONDecodeError:
        return JSONDecodeError(msg, self.doc, pos)

    def skip(self, i: int) -> int:
        doc = self.doc
        while i < len(doc) and doc[i] in _WS:
            i += 1
        return i

    def value(self, i: int) -> object:
        doc = self.doc
        c = doc[i : i + 1]  # "" at the end
        if c == '"':
            return self.string(i + 1)
        if c == "{":
            return self.json_object(i + 1)
        if c == "[":
            return self.json_array(i + 1)
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

    def json_object(self, i: int) -> dict[str, object]:
        doc, result = self.doc, dict[str, object]()
        i = self.skip(i)
        if doc[i : i + 1] == "}":
            self.end = i + 1
            return result
        while True:
            if doc[i : i + 1] != '"':
                raise self.fail("Expecting property name enclosed in double quotes", i)
            key = self.string(i + 1)
            i = self.skip(self.end)
            if doc[i : i + 1] != ":":
                raise self.fail("Expecting ':' delimiter", i)
            result[key] = self.value(self.skip(i + 1))
            i = self.skip(self.end)
            c = doc[i : i + 1]
            if c == "}":
                self.end = i + 1
                return result
            if c != ",":
                raise self.fail("Expecting ',' delimiter", i)
            i = self.skip(i + 1)

    def json_array(self, i: int) -> list[object]:
        doc, result = self.doc, list[object]()
        i = self.skip(i)
        if doc[i : i + 1] == "]":
            self.end = i + 1
            return result
        while True:
            result.append(self.value(i))
            i = self.skip(self.end)
            c = doc[i : i + 1]
            if c == "]":
                self.end = i + 1
                return result
            if c != ",":
                raise self.fail("Expecting ',' delimiter", i)
            i = self.skip(i + 1)
