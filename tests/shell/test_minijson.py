"""epollshim.minijson against the json module as the oracle."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_imports import imported_by  # a fresh lean interpreter's modules

from epollshim import minijson

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


# loads (the C scanner, and parse on any error) and parse alone: both are held to json.
PARSERS = pytest.mark.parametrize("parse", [minijson.loads, minijson.parse], ids=["loads", "parse"])


def same(a: object, b: object) -> bool:
    """Equal, with NaN equal to NaN and types kept (1 is not 1.0, True is not 1)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@given(values)
def test_dumps_is_json_dumps(value: object) -> None:
    assert minijson.dumps(value) == json.dumps(value)


# Flat objects of plain values, which dumps writes itself (and their near misses, which it
# hands to the C encoder): keys and strings from printable ASCII and the characters next
# to it, so quotes, backslashes, DEL and control characters all come up.
near_ascii = st.text(st.characters(min_codepoint=0, max_codepoint=0x80), max_size=8)
flat = st.dictionaries(
    near_ascii | st.integers(),
    st.none() | st.booleans() | st.integers() | near_ascii | st.floats(),
    max_size=6,
)


@given(flat)
def test_dumps_of_a_flat_object_is_json_dumps(value: dict[object, object]) -> None:
    assert minijson.dumps(value) == json.dumps(value)


def test_a_flat_object_of_plain_values_is_written_without_the_c_encoder() -> None:
    """The v2 shim's options.json at Create: importing ``_json`` costs ~0.3 ms there."""
    obj = {"root": "/run/x", "n": -3, "b": True, "z": None}
    assert minijson.dumps(obj) == '{"root": "/run/x", "n": -3, "b": true, "z": null}'
    assert "_json" not in imported_by(f"from epollshim import minijson; minijson.dumps({obj!r})")


@given(values, st.sampled_from([None, 0, 2]), st.booleans())
def test_loads_reads_what_json_writes(value: object, indent: int | None, ascii: bool) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii)
    assert same(minijson.loads(text), json.loads(text))
    assert same(minijson.parse(text), json.loads(text))
    assert same(minijson.loads(text.encode()), json.loads(text.encode()))
    assert same(minijson.loads(minijson.dumps(value)), value)


def outcome(parse: object, text: str) -> tuple[str, object]:
    try:
        return "ok", parse(text)
    except ValueError as e:
        return "error", (e.msg, e.pos, e.lineno, e.colno)


JSONISH = st.text(
    alphabet=' \t\n\r{}[],:"\\/-+.0123456789eEuabfnrtlsNIaIy\x01\x1f\ud800é', max_size=30
)


@PARSERS
@given(text=JSONISH)
def test_arbitrary_text_parses_or_fails_like_json(parse: object, text: str) -> None:
    ours, theirs = outcome(parse, text), outcome(json.loads, text)
    assert ours[0] == theirs[0], (ours, theirs)
    if ours[0] == "ok":
        assert same(ours[1], theirs[1])
    else:  # the same message at the same place
        assert ours[1] == theirs[1]


@PARSERS
@given(value=values, data=st.data())
def test_damaged_json_fails_like_json(parse: object, value: object, data: st.DataObject) -> None:
    text = json.dumps(value, indent=1)
    cut = data.draw(st.integers(0, len(text)))
    damage = data.draw(st.sampled_from(["", ",", "}", "]", '"', "\\", "x", ":", "\x00"]))
    broken = text[:cut] + damage + text[cut + 1 :]
    ours, theirs = outcome(parse, broken), outcome(json.loads, broken)
    assert ours[0] == theirs[0], (broken, ours, theirs)
    if ours[0] == "error":
        assert ours[1] == theirs[1], broken


@pytest.mark.parametrize(
    "text",
    [
        '{"a": [1, -2.5e3, 0, 1E+2, -0.0, 1e400]}',
        '"\\ud83d\\ude00 \\ud800 \\udc00x \\u00e9\\n\\t\\/\\"\\\\"',
        "NaN",
        "-Infinity",
        ' \n {"a" : {"b": [true, false, null]}} \n',
        "{}",
        "[]",
        '{"a": 1, "a": 2}',
    ],
)
@PARSERS
def test_examples_parse_like_json(parse: object, text: str) -> None:
    assert same(parse(text), json.loads(text))  # type: ignore[operator]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[1,]",
        '{"a": 1,}',
        "{'a': 1}",
        "01",
        "1.",
        "-",
        ".5",
        '"abc',
        '"a\\x"',
        '"\\u12g4"',
        '"tab\tinside"',
        '{"a" 1}',
        "[1 2]",
        '\n\n  {\n  "process": tru }',
        "\ufeff{}",
    ],
)
@PARSERS
def test_malformed_fails_like_json(parse: object, text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    with pytest.raises(minijson.JSONDecodeError) as ours:
        parse(text)  # type: ignore[operator]
    got, want = ours.value, theirs.value
    assert (got.msg, got.pos, got.lineno, got.colno) == (
        want.msg,
        want.pos,
        want.lineno,
        want.colno,
    )
    assert str(got) == str(want)


def test_bytes_must_be_utf8_and_may_start_with_a_bom() -> None:
    assert minijson.loads(b'\xef\xbb\xbf{"a": "\xc3\xa9"}') == {"a": "é"}
    with pytest.raises(UnicodeDecodeError):
        minijson.loads(b'"\xff"')


@pytest.mark.parametrize(
    "data",
    [b"\xef\xbb\xbf[1]", b"\xef\xbb\xbf\xef\xbb\xbf[1]", b"\xef\xbb[1]", b"\xef\xbb\xbf", b""],
)
def test_bytes_are_read_as_the_utf8_sig_codec_reads_them(data: bytes) -> None:
    """One BOM is dropped, as ``decode("utf-8-sig")`` drops it."""
    try:
        want: object = minijson.loads(data.decode("utf-8-sig"))
    except ValueError as e:
        want = type(e)
    for form in (data, bytearray(data)):
        try:
            got: object = minijson.loads(form)
        except ValueError as e:
            got = type(e)
        assert got == want


def test_reading_bytes_does_not_import_the_utf8_sig_codec() -> None:
    """Its import costs ~0.25 ms on the way to ``runc create`` (config.json at Create)."""
    read = "from epollshim import minijson; minijson.loads(b'\\xef\\xbb\\xbf{}')"
    assert "encodings.utf_8_sig" not in imported_by(read)


def test_dumps_rejects_what_json_rejects() -> None:
    with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
        minijson.dumps({"a": [object()]})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        minijson.dumps(loop)
    assert minijson.dumps({"a": 1}) == '{"a": 1}'  # no stale marker left behind


@PARSERS
@pytest.mark.parametrize("open_", ["[", '{"a": '])
def test_nesting_up_to_the_limit_is_read_like_json(parse: object, open_: str) -> None:
    """At MAX_DEPTH json still agrees, and dumps writes back what loads returned."""
    close = "]" if open_ == "[" else "}"
    text = open_ * minijson.MAX_DEPTH + "0" + close * minijson.MAX_DEPTH
    value = parse(text)  # type: ignore[operator]
    assert value == json.loads(text)  # not same(): it recurses in Python, 2 frames a level
    assert minijson.dumps(value) == text


@pytest.mark.parametrize("depth", [minijson.MAX_DEPTH + 1, 100_000])
@pytest.mark.parametrize("open_", ["[", '{"a": '])
def test_nesting_past_the_limit_fails_where_it_starts(open_: str, depth: int) -> None:
    """No RecursionError however deep: a JSONDecodeError at the first bracket too many."""
    close = "]" if open_ == "[" else "}"
    text = "\n" + open_ * depth + close * depth
    with pytest.raises(minijson.JSONDecodeError) as info:
        minijson.loads(text)
    pos = 1 + len(open_) * minijson.MAX_DEPTH
    assert text[pos] in "[{"
    error = info.value
    assert error.msg == f"Arrays and objects nested deeper than {minijson.MAX_DEPTH}"
    assert (error.pos, error.lineno, error.colno) == (pos, 2, pos)


def test_more_brackets_than_the_limit_but_shallow_is_read_like_json() -> None:
    """Over MAX_DEPTH brackets in all, loads leaves the C scanner out; the nesting is 2."""
    text = "[" + ", ".join(["[]", '"[{"'] * minijson.MAX_DEPTH) + "]"
    assert text.count("[") + text.count("{") > minijson.MAX_DEPTH
    assert minijson.loads(text) == json.loads(text)


def test_loads_never_imports_json_even_on_errors() -> None:
    """The C scanner reports errors through json.decoder: loads must not pull json in."""
    import subprocess
    import sys

    import epollshim.lean

    code = (
        f"import sys; sys.path.insert(0, {epollshim.lean.PACKAGE_PARENT!r})\n"
        "from epollshim import minijson\n"
        "assert minijson.loads(b'{\"a\": [1, 2.5, NaN]}')['a'][:2] == [1, 2.5]\n"
        "for bad in ('[1,', '{\"a\" 1}', '\"abc', 'tru', '[1 2]'):\n"
        "    try:\n"
        "        minijson.loads(bad)\n"
        "    except minijson.JSONDecodeError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit('no error for ' + bad)\n"
        "print(sorted(m for m in sys.modules if m in ('json', 'json.decoder', 're', '_json')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["['_json']"]
