"""``Stats``: a container's cgroup v1 counters as ``io.containerd.cgroups.v1.Metrics``.

Rules:
- Read the cgroup files directly, as runc-v2 does (no runc call): pids, cpuacct usage
  and the memory controller. A file that is missing leaves its fields at zero.
- The schema is a subset of containerd/cgroups stats/v1/metrics.proto (same field
  numbers): Metrics{pids 2, cpu 3, memory 4}, PidsStat{current 1, limit 2},
  CPUStat{usage 1}, CPUUsage{total 1, kernel 2, user 3, per_cpu 4},
  MemoryStat{cache 1, rss 2, ..., totals 18-32, usage 33, swap 34, kernel 35,
  kernel_tcp 36}, MemoryEntry{limit 1,
  usage 2, max 3, failcnt 4}. Unknown fields are simply absent for the reader.
"""

import os

from epollshim.v2.pb import MESSAGE, UINT64, Any, Field, Message, field, message, pack_any

ROOT = "/sys/fs/cgroup"


def _u(n: int, name: str) -> Field:
    return Field(n, name, UINT64)


@message
class PidsStat(Message):
    TYPE_NAME = "io.containerd.cgroups.v1.PidsStat"
    FIELDS = (_u(1, "current"), _u(2, "limit"))
    current: int = 0
    limit: int = 0


@message
class CPUUsage(Message):
    TYPE_NAME = "io.containerd.cgroups.v1.CPUUsage"
    FIELDS = (
        _u(1, "total"),
        _u(2, "kernel"),
        _u(3, "user"),
        Field(4, "per_cpu", UINT64, repeated=True),
    )
    total: int = 0
    kernel: int = 0
    user: int = 0
    per_cpu: list[int] = field(factory=list)


@message
class CPUStat(Message):
    TYPE_NAME = "io.containerd.cgroups.v1.CPUStat"
    FIELDS = (Field(1, "usage", MESSAGE, CPUUsage),)
    usage: CPUUsage | None = None


@message
class MemoryEntry(Message):
    TYPE_NAME = "io.containerd.cgroups.v1.MemoryEntry"
    FIELDS = (_u(1, "limit"), _u(2, "usage"), _u(3, "max"), _u(4, "failcnt"))
    limit: int = 0
    usage: int = 0
    max: int = 0
    failcnt: int = 0


@message
class MemoryStat(Message):
    TYPE_NAME = "io.containerd.cgroups.v1.MemoryStat"
    FIELDS = (
        _u(1, "cache"),
        _u(2, "rss"),
        _u(3, "rss_huge"),
        _u(4, "mapped_file"),
        _u(5, "dirty"),
        _u(6, "writeback"),
        _u(7, "pg_pg_in"),
        _u(8, "pg_pg_out"),
        _u(9, "pg_fault"),
        _u(10, "pg_maj_fault"),
        _u(11, "inactive_anon"),
        _u(12, "active_anon"),
        _u(13, "inactive_file"),
        _u(14, "active_file"),
        _u(15, "unevictable"),
        _u(16, "hierarchical_memory_limit"),
        _u(17, "hierarchical_swap_limit"),
        _u(18, "total_cache"),
        _u(19, "total_rss"),
        _u(20, "total_rss_huge"),
        _u(21, "total_mapped_file"),
        _u(22, "total_dirty"),
        _u(23, "total_writeback"),
        _u(24, "total_pg_pg_in"),
        _u(25, "total_pg_pg_out"),
        _u(26, "total_pg_fault"),
        _u(27, "total_pg_maj_fault"),
        _u(28, "total_inactive_anon"),
        _u(29, "total_active_anon"),
        _u(30, "total_inactive_file"),
        _u(31, "total_active_file"),
        _u(32, "total_unevictable"),
        Field(33, "usage", MESSAGE, MemoryEntry),
        Field(34, "swap", MESSAGE, MemoryEntry),
        Field(35, "kernel", MESSAGE, MemoryEntry),
        Field(36, "kernel_tcp", MESSAGE, MemoryEntry),
    )
    cache: int = 0
    rss: int = 0
    rss_huge: int = 0
    mapped_file: int = 0
    dirty: int = 0
    writeback: int = 0
    pg_pg_in: int = 0
    pg_pg_out: int = 0
    pg_fault: int = 0
    pg_maj_fault: int = 0
    inactive_anon: int = 0
    active_anon: int = 0
    inactive_file: int = 0
    active_file: int = 0
    unevictable: int = 0
    hierarchical_memory_limit: int = 0
    hierarchical_swap_limit: int = 0
    total_cache: int = 0
    total_rss: int = 0
    total_rss_huge: int = 0
    total_mapped_file: int = 0
    total_dirty: int = 0
    total_writeback: int = 0
    total_pg_pg_in: int = 0
    total_pg_pg_out: int = 0
    total_pg_fault: int = 0
    total_pg_maj_fault: int = 0
    total_inactive_anon: int = 0
    total_active_anon: int = 0
    total_inactive_file: int = 0
    total_active_file: int = 0
    total_unevictable: int = 0
    usage: MemoryEntry | None = None
    swap: MemoryEntry | None = None
    kernel: MemoryEntry | None = None
    kernel_tcp: MemoryEntry | None = None


@message
class Metrics(Message):
    TYPE_NAME = "io.containerd.cgroups.v1.Metrics"
    FIELDS = (
        Field(2, "pids", MESSAGE, PidsStat),
        Field(3, "cpu", MESSAGE, CPUStat),
        Field(4, "memory", MESSAGE, MemoryStat),
    )
    pids: PidsStat | None = None
    cpu: CPUStat | None = None
    memory: MemoryStat | None = None


# memory.stat keys -> MemoryStat fields (the v1 names; pgpgin -> pg_pg_in, ...)
_RENAMED = {"pgpgin": "pg_pg_in", "pgpgout": "pg_pg_out", "pgfault": "pg_fault"}
_RENAMED["pgmajfault"] = "pg_maj_fault"
_MEMORY_KEYS = {**_RENAMED, **{"total_" + k: "total_" + v for k, v in _RENAMED.items()}}
_U64 = (1 << 64) - 1


def _controllers(pid: int) -> dict[str, str]:
    paths: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(","):
                paths[name] = path
    return paths


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _int(path: str) -> int:
    text = _read(path)
    if text == "max":
        return _U64
    try:
        return max(0, min(int(text), _U64))
    except ValueError:
        return 0


def _entry(base: str, prefix: str) -> MemoryEntry:
    return MemoryEntry(
        limit=_int(f"{base}/{prefix}limit_in_bytes"),
        usage=_int(f"{base}/{prefix}usage_in_bytes"),
        max=_int(f"{base}/{prefix}max_usage_in_bytes"),
        failcnt=_int(f"{base}/{prefix}failcnt"),
    )


def _memory(base: str) -> MemoryStat:
    stat = MemoryStat()
    names = {f.name for f in MemoryStat.FIELDS}
    for line in _read(f"{base}/memory.stat").splitlines():
        key, _, value = line.partition(" ")
        name = _MEMORY_KEYS.get(key, key)
        if name in names and value.isdigit():
            setattr(stat, name, min(int(value), _U64))
    stat.usage = _entry(base, "memory.")
    stat.swap = _entry(base, "memory.memsw.")
    stat.kernel = _entry(base, "memory.kmem.")
    stat.kernel_tcp = _entry(base, "memory.kmem.tcp.")
    return stat


def collect(pid: int) -> Any:
    """The Metrics of ``pid``'s cgroups, packed as containerd's Any."""
    paths = _controllers(pid)
    metrics = Metrics()
    if "pids" in paths:
        base = f"{ROOT}/pids{paths['pids']}"
        metrics.pids = PidsStat(
            current=_int(f"{base}/pids.current"), limit=_int(f"{base}/pids.max")
        )
    if "cpuacct" in paths:
        base = f"{ROOT}/cpuacct{paths['cpuacct']}"
        per_cpu = [int(v) for v in _read(f"{base}/cpuacct.usage_percpu").split() if v.isdigit()]
        usage = CPUUsage(
            total=_int(f"{base}/cpuacct.usage"),
            kernel=_int(f"{base}/cpuacct.usage_sys"),
            user=_int(f"{base}/cpuacct.usage_user"),
            per_cpu=per_cpu,
        )
        metrics.cpu = CPUStat(usage=usage)
    if "memory" in paths and os.path.isdir(f"{ROOT}/memory{paths['memory']}"):
        metrics.memory = _memory(f"{ROOT}/memory{paths['memory']}")
    return pack_any(metrics)
