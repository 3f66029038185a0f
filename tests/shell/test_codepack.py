"""Code packs (epollshim.codepack): the forked v2 daemon's imports from one file.

Each case runs in a fresh lean interpreter (``python -I -S``), as a shim does, on a small
package written here: a pack must serve exactly what is fresh, keep each module's own
file name (tracebacks show the source), and change nothing when it is missing, broken
or stale. The last test checks the pack ``make dev`` installs for the v2 daemon.
"""

import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest

from epollshim.lean import PACKAGE_PARENT
from epollshim.tools import launchers

MODULES = {
    "pk/__init__.py": "",
    "pk/a.py": "import colorsys\nfrom pk import b\nfrom pk.sub import c\n"
    "VALUE = b.VALUE + c.VALUE\n",
    "pk/b.py": "VALUE = 1\n\ndef fail():\n    raise RuntimeError('from b')  # the line\n",
    "pk/sub/__init__.py": "",
    "pk/sub/c.py": "VALUE = 10\n",
}
# colorsys: a module of the standard library that pk.a brings in (those imported before the
# build, such as traceback's, are not packed)
PACKED = {"pk", "pk.a", "pk.b", "pk.sub", "pk.sub.c", "colorsys"}

# Run in the child: ``PACK`` is the pack's path, then the test's statements.
PRELUDE = f"""
import sys, traceback
sys.path[:0] = [{PACKAGE_PARENT!r}, sys.argv[1]]
from epollshim import codepack
PACK = sys.argv[2]
"""


def run(
    root: Path | str, pack: Path | str, body: str, python: str = sys.executable, opt: str = ""
) -> list[str]:
    """The lines ``body`` prints, run after ``PRELUDE`` by ``python -I -S`` (and ``opt``)."""
    r = subprocess.run(
        [python, "-I", "-S", *([opt] if opt else []), "-c", PRELUDE + body, str(root), str(pack)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.split("\n")


@pytest.fixture
def package(tmp_path: Path) -> tuple[Path, Path]:
    """(the directory holding ``pk``, the path of its pack, built)."""
    root = tmp_path / "src"
    for name, text in MODULES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    pack = tmp_path / "pk.a.pack"
    assert run(root, pack, "print(codepack.build('pk.a', PACK))")[0] == str(len(PACKED))
    return root, pack


IMPORT_A = """
finder = codepack.load(PACK)
import pk.a
print(finder.served if finder else None)
print(pk.a.VALUE)
"""


def test_a_pack_serves_every_module_under_its_own_name(package: tuple[Path, Path]) -> None:
    root, pack = package
    body = IMPORT_A + (
        "packed = [n for n, m in sys.modules.items() if getattr(m, '__loader__', 0) is finder]\n"
        "print(sorted(packed))\n"
        "print(pk.b.__file__, pk.sub.__path__[0], sys.modules['colorsys'].__file__)\n"
        "try:\n    pk.b.fail()\nexcept RuntimeError:\n"
        "    print(traceback.format_exc().replace(chr(10), ' | '))\n"
    )
    served, value, names, files, tb = run(root, pack, body)[:5]
    assert (served, value) == (str(len(PACKED)), "11")
    assert names == repr(sorted(PACKED))
    stdlib = os.path.join(os.path.dirname(os.__file__), "colorsys.py")
    assert files == f"{root / 'pk' / 'b.py'} {root / 'pk' / 'sub'} {stdlib}"
    assert f'{root / "pk" / "b.py"}", line 4' in tb and "raise RuntimeError('from b')" in tb


def test_a_source_changed_after_the_build_is_imported_from_the_source(
    package: tuple[Path, Path],
) -> None:
    root, pack = package
    (root / "pk" / "b.py").write_text("VALUE = 100  # changed\n")
    served, value = run(root, pack, IMPORT_A)[:2]
    assert (served, value) == (str(len(PACKED) - 1), "110")


def test_the_same_size_and_a_new_mtime_is_a_change(package: tuple[Path, Path]) -> None:
    root, pack = package
    source = root / "pk" / "sub" / "c.py"
    source.write_text("VALUE = 20\n")
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert run(root, pack, IMPORT_A)[:2] == [str(len(PACKED) - 1), "21"]


def test_the_same_mtime_and_another_size_is_a_change(package: tuple[Path, Path]) -> None:
    root, pack = package
    source = root / "pk" / "sub" / "c.py"
    st = source.stat()
    source.write_text("VALUE = 200\n")
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert run(root, pack, IMPORT_A)[:2] == [str(len(PACKED) - 1), "201"]


@pytest.mark.parametrize(
    "content",
    [
        None,
        b"",
        b"not marshal data",
        b"\xff" * 8 + b"an index that long is not there",
        "other-format",
        "other-magic",
        "other-shape",
    ],
    ids=["missing", "empty", "garbage", "too-long", "other-format", "other-magic", "other-shape"],
)
def test_no_pack_or_an_unusable_one_changes_nothing(
    package: tuple[Path, Path], content: bytes | str | None
) -> None:
    root, pack = package
    if content is None:
        pack.unlink()
    elif isinstance(content, str):  # a well-formed header over the pack's own codes
        data = pack.read_bytes()
        size = int.from_bytes(data[:8], "little")
        form, magic, index = marshal.loads(data[8 : 8 + size])
        head = marshal.dumps(
            {
                "other-format": (form + 1, magic, index),
                "other-magic": (form, b"\0\0\r\n", index),
                "other-shape": (form, magic, [1]),
            }[content]
        )
        pack.write_bytes(len(head).to_bytes(8, "little") + head + data[8 + size :])
    else:
        pack.write_bytes(content)
    before = "n = len(sys.meta_path)\n"
    after = "print(len(sys.meta_path) == n)\n"
    assert run(root, pack, before + IMPORT_A + after)[:3] == ["None", "11", "True"]


def test_a_truncated_pack_serves_what_it_still_holds(package: tuple[Path, Path]) -> None:
    root, pack = package
    pack.write_bytes(pack.read_bytes()[:-1])  # the last module's code is cut short
    assert run(root, pack, IMPORT_A)[:2] == [str(len(PACKED) - 1), "11"]


def test_a_damaged_module_in_a_pack_is_imported_from_its_source(
    package: tuple[Path, Path],
) -> None:
    root, pack = package
    data = bytearray(pack.read_bytes())
    size = int.from_bytes(data[:8], "little")
    _, _, index = marshal.loads(bytes(data[8 : 8 + size]))
    offset, length = index["pk.b"][4:]
    start = 8 + size + offset
    data[start : start + length] = b"\xff" * length  # not marshal data
    pack.write_bytes(bytes(data))
    assert run(root, pack, IMPORT_A)[:2] == [str(len(PACKED) - 1), "11"]


def test_unload_hands_later_imports_back(package: tuple[Path, Path]) -> None:
    root, pack = package
    body = (
        "finder = codepack.load(PACK)\nimport pk.b\ncodepack.unload(finder)\n"
        "import pk.a\nprint(finder.served, finder in sys.meta_path, finder.index, finder.fd)\n"
        "print(type(pk.a.__spec__.loader).__name__)\n"
    )
    assert run(root, pack, body)[:2] == ["2 False {} -1", "SourceFileLoader"]


def as_the_daemon(body: str) -> list[str]:
    """The lines ``body`` prints, run as the v2 launcher runs the daemon: on the launchers'
    interpreter, ``-I -S -OO``, with the installed package and its code pack."""
    return run(PACKAGE_PARENT, "", body, launchers.choose_python("auto"), "-OO")


def test_the_installed_v2_daemon_pack_serves_all_its_imports() -> None:
    """What ``make dev`` installed: the forked daemon's imports, on the launchers'
    interpreter with ``-OO``, take every module with a source file (ours, and the standard
    library's, ``selectors`` among them) from the pack (none stale or missing), through the
    function the daemon uses."""
    body = (
        "from epollshim.v2 import main\n"
        "before = set(sys.modules)\n"
        "serve, served = main.import_daemon()\n"
        "new = [m for n, m in sys.modules.items() if n not in before]\n"
        "sourced = [m for m in new if (getattr(m, '__file__', '') or '').endswith('.py')]\n"
        "print(served, len(sourced), 'selectors' in sys.modules)\n"
    )
    served, imported, selectors = as_the_daemon(body)[0].split()
    assert served == imported, (
        f"the daemon's code pack served {served} of its {imported} modules: "
        "none installed, or stale (run `make dev`)"
    )
    assert int(imported) > 20 and selectors == "True"


def test_the_daemon_imports_with_the_collector_off_and_leaves_it_on() -> None:
    """``main.import_daemon``: one young collection (after the standard library's modules),
    none during ours; then the collector is on with what they made frozen, and no garbage
    among it. ``forget`` frees a module's functions without a collection."""
    body = (
        "import gc, weakref\n"
        "from epollshim.v2 import main, start\n"
        "dropped = weakref.ref(start.run)\n"
        "del start\n"
        "gc.disable()\n"
        "main.forget('epollshim.v2.start')\n"
        "print(dropped() is None)\n"
        "gc.enable()\n"
        "runs = []\n"
        "gc.callbacks.append(lambda phase, info: runs.append((phase, info['generation'])))\n"
        "serve, served = main.import_daemon()\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 5000, runs)\n"
        "gc.unfreeze()\n"
        "print(gc.collect())\n"
    )
    freed, state, garbage = as_the_daemon(body)[:3]
    assert freed == "True"
    assert state == "True True [('start', 0), ('stop', 0)]"
    assert int(garbage) < 10, f"{garbage} objects of garbage frozen by import_daemon"
