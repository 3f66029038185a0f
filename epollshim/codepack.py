"""Code packs: the compiled modules a process imports at start-up, in one file.

Why: the forked v2 daemon imports ~30 of our modules and ~7 of the standard library's
before it can read containerd's Create, and containerd waits on that (every container
start). Per module, the import system looks it up along ``sys.path``, stats the source,
opens and reads the ``.pyc`` and checks it: measured here ~3 ms of the ~17 ms the daemon
spends importing our modules, and ~0.8 ms of CPU for the standard library's. A pack is
one file holding the compiled code of an entry module, of every module of its package
that is imported then, and of the other modules with a source file (``.py``: the
standard library's ``collections``, ``selectors``, ...) that importing the entry brings
in; ``load`` reads its index, and each import reads its module's code with one
``pread`` (one module at a time, as ``.pyc`` files are read: a whole pack in memory at
once measured ~0.1 MB more private memory in the daemon; read this way, ~20 KB more).

Rules:
- A pack only ever saves time: a module whose source changed since the pack was built
  (mtime or size differ, as a ``.pyc`` is checked), a pack of another interpreter
  (magic number) or layout (``FORMAT``), a missing or unreadable pack, the modules a
  truncated or damaged pack no longer holds (read and checked before a module is
  created): those imports go the normal way.
- Modules keep their identity: ``__file__``, ``__spec__.origin`` and the code's file name
  are the source's, so tracebacks, ``linecache`` and ``inspect`` read the source as usual.
- One pack per interpreter and optimisation level, like ``.pyc`` files, beside them:
  ``<package>/__pycache__/<entry>.<cache_tag>[.opt-N].pack``. ``build`` runs in the
  interpreter and with the ``-O`` level of the process that will load it
  (``epollshim install-launchers`` does so for the v2 daemon).
- ``load`` puts the finder first on ``sys.meta_path``; ``unload`` takes it off once the
  start-up imports are done, and closes the pack. Later (lazy) imports take the normal way.
- Imports only ``os``, ``sys`` and ``marshal`` (built in): it runs before everything else.

Format: 8 bytes (little-endian) giving the index's length, the index (``marshal``:
``(FORMAT, MAGIC_NUMBER, {module: (source, mtime_ns, size, is_package, offset, length)})``),
then the modules' ``marshal``-ed code objects, each at its offset from the end of the index.
"""

import marshal
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

    # module name -> (source path, source mtime_ns, source size, is a package,
    # offset of its code in the pack, length of its code)
    Entry = tuple[str, int, int, bool, int, int]

_bootstrap = sys.modules["_frozen_importlib"]  # ModuleSpec, without importing importlib
_external = sys.modules["_frozen_importlib_external"]  # MAGIC_NUMBER
HEADER = 8  # the index's length
_CODE = type((lambda: None).__code__)  # types.CodeType, without importing types
FORMAT = 2  # of the layout: a pack of another is not used


def pack_path(entry: str) -> str:
    """Where the pack of ``entry`` lives for this interpreter and ``-O`` level: beside the
    ``.pyc`` files of its top-level package (imported already)."""
    package = sys.modules[entry.partition(".")[0]]
    level = sys.flags.optimize
    opt = f".opt-{level}" if level else ""
    name = f"{entry}.{sys.implementation.cache_tag}{opt}.pack"
    return os.path.join(os.path.dirname(str(package.__file__)), "__pycache__", name)


def build(entry: str, path: str) -> int:
    """Import ``entry``, then write to ``path`` (atomically) the code of every module of its
    top-level package that is imported now and of every other module with a source file
    that importing ``entry`` brought in, compiled from source as this interpreter imports
    it. Returns how many modules the pack holds."""
    top = entry.partition(".")[0]
    before = set(sys.modules)
    __import__(entry)
    index: dict[str, Entry] = {}
    codes: list[bytes] = []
    offset = 0
    for name, module in list(sys.modules.items()):
        source = getattr(module, "__file__", None) or ""
        ours = name == top or name.startswith(top + ".")
        if (not ours and name in before) or not source.endswith(".py"):
            continue
        with open(source, "rb") as f:
            text = f.read()
            st = os.fstat(f.fileno())
        code = marshal.dumps(compile(text, source, "exec", dont_inherit=True))
        package = hasattr(module, "__path__")
        index[name] = (source, st.st_mtime_ns, st.st_size, package, offset, len(code))
        codes.append(code)
        offset += len(code)
    head = marshal.dumps((FORMAT, _external.MAGIC_NUMBER, index))
    tmp = f"{path}.{os.getpid()}.tmp"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with open(tmp, "wb") as f:
            f.write(len(head).to_bytes(HEADER, "little") + head + b"".join(codes))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return len(index)


class Finder:
    """A ``sys.meta_path`` finder and loader serving a pack's modules."""

    def __init__(self, fd: int, base: int, index: "dict[str, Entry]") -> None:
        self.fd = fd
        self.base = base  # where the codes start
        self.index = index
        self.served = 0  # modules imported from the pack (for tests and traces)

    def find_spec(
        self, name: str, path: "Sequence[str] | None" = None, target: "ModuleType | None" = None
    ) -> "ModuleSpec | None":
        entry = self.index.pop(name, None)  # asked once: served now, or the normal way
        if entry is None:
            return None
        source, mtime_ns, size, package, offset, length = entry
        try:
            st = os.stat(source)
            if st.st_mtime_ns != mtime_ns or st.st_size != size:
                return None  # changed since the build: the normal way, fresh
            code = marshal.loads(os.pread(self.fd, length, self.base + offset))
        except (OSError, EOFError, ValueError, TypeError):  # the source gone; a damaged pack
            return None
        if not isinstance(code, _CODE):
            return None  # a truncated or damaged pack: what it no longer holds
        spec: ModuleSpec = _bootstrap.ModuleSpec(name, self, origin=source, is_package=package)
        spec.has_location = True  # __file__ is the source
        spec.loader_state = code
        if package:
            spec.submodule_search_locations = [os.path.dirname(source)]
        return spec

    def create_module(self, spec: "ModuleSpec") -> None:
        return None  # the default module object

    def exec_module(self, module: "ModuleType") -> None:
        spec = module.__spec__
        assert spec is not None  # for the type checker: the import system set it
        code, spec.loader_state = spec.loader_state, None
        self.served += 1
        exec(code, module.__dict__)


def load(path: str) -> Finder | None:
    """Serve the modules of the pack at ``path`` from now on; None (and nothing changed)
    when there is no usable pack."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        size = int.from_bytes(os.read(fd, HEADER), "little")
        form, magic, index = marshal.loads(os.read(fd, size))
        usable = form == FORMAT and magic == _external.MAGIC_NUMBER and isinstance(index, dict)
    except (OSError, EOFError, ValueError, TypeError, OverflowError, MemoryError):
        usable = False  # unreadable, truncated, not a pack
    if not usable:
        os.close(fd)
        return None
    finder = Finder(fd, HEADER + size, index)
    sys.meta_path.insert(0, finder)
    return finder


def unload(finder: Finder | None) -> None:
    """Stop serving (start-up is over): later imports take the normal way."""
    if finder is not None and finder.fd >= 0:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
        finder.index.clear()
        os.close(finder.fd)
        finder.fd = -1
