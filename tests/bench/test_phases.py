"""bench.phases cuts one ``ctr run --rm`` into phases from process events (no perf needed)."""

from __future__ import annotations

from bench.phases import Event, milestones, table

SHIM = "/usr/bin/containerd-shim-runc-v2"


def ev(t: float, pid: int, exe: str = "", *, exit: bool = False) -> Event:
    return Event(t, pid, "x", exe, exit)


def one_run(t0: float) -> list[Event]:
    return [
        ev(t0 + 0.001, 10, "/usr/bin/ctr"),
        ev(t0 + 0.050, 11, SHIM),  # start
        ev(t0 + 0.060, 11, exit=True),
        ev(t0 + 0.065, 12, SHIM),  # runc-v2's daemon: neither start nor delete
        ev(t0 + 0.070, 13, "/usr/sbin/runc"),  # create
        ev(t0 + 0.110, 13, exit=True),
        ev(t0 + 0.120, 14, "/usr/sbin/runc"),  # start
        ev(t0 + 0.125, 15, "/bin/true"),
        ev(t0 + 0.126, 15, exit=True),
        ev(t0 + 0.127, 14, exit=True),
        ev(t0 + 0.135, 16, "/usr/sbin/runc"),  # delete
        ev(t0 + 0.142, 16, exit=True),
        ev(t0 + 0.150, 17, SHIM),  # delete
        ev(t0 + 0.155, 18, "/usr/sbin/runc"),  # runc-v2's delete runs runc delete --force
        ev(t0 + 0.160, 18, exit=True),
        ev(t0 + 0.165, 17, exit=True),
        ev(t0 + 0.180, 10, exit=True),
    ]


def test_milestones_of_one_run() -> None:
    m = milestones(one_run(100.0), 100.0)
    expected = {
        "shim start exec": 0.050,
        "shim start exit": 0.060,
        "runc create exec": 0.070,
        "runc create exit": 0.110,
        "runc start exec": 0.120,
        "true exit": 0.126,
        "runc delete exec": 0.135,
        "runc delete exit": 0.142,
        "shim delete exec": 0.150,
        "shim delete exit": 0.165,
        "ctr exit": 0.180,
    }
    assert m.keys() >= expected.keys()
    for k, v in expected.items():
        assert abs(m[k] - v) < 1e-9, k


def test_table_shows_each_phase_and_the_difference() -> None:
    a = [milestones(one_run(0.0), 0.0)]
    b = [{k: v + (0.005 if k != "shim start exec" else 0.0) for k, v in a[0].items()}]
    text = table({"runc-v2": a, "epollshim-v2": b})
    rows = text.splitlines()[2:]
    assert len(rows) == 11
    assert rows[1].startswith("| shim start (") and rows[1].endswith("| +5.0 |")
    assert all(r.endswith("| +0.0 |") for r in rows[2:])
