"""ExitRouter: exits that come before their pid is known, orphans, and routing once."""

from epollshim.core.exits import ExitRouter

PID = 300
EXIT_0 = 0
KILLED = 9


def test_watched_exit_is_routed_once() -> None:
    router = ExitRouter()
    assert router.watch(PID, "init") is None
    assert router.exited(PID, EXIT_0) == "init"
    # A second exit of the same pid (reused by a new orphan) reaches nobody.
    assert router.exited(PID, KILLED) is None
    assert router.watched == {} and router.early == {}


def test_early_exit_is_replayed_by_watch() -> None:
    router = ExitRouter()
    router.expect()
    assert router.exited(PID, KILLED) is None  # before the pid file was read
    assert router.watch(PID, "exec-1") == KILLED
    router.settle()
    # Replayed, so not watched any more: the exit is not delivered twice.
    assert router.watched == {}
    assert router.exited(PID, EXIT_0) is None


def test_unknown_exit_is_dropped_when_nothing_starts() -> None:
    router = ExitRouter()
    assert router.exited(PID, EXIT_0) is None  # an orphan reparented to the subreaper
    assert router.early == {}
    assert router.watch(PID, "init") is None
    assert router.watched == {PID: "init"}


def test_cache_is_cleared_when_the_last_starting_process_settles() -> None:
    router = ExitRouter()
    router.expect()
    router.expect()
    router.exited(PID, KILLED)
    router.exited(PID + 1, EXIT_0)
    router.settle()
    assert router.early == {PID: KILLED, PID + 1: EXIT_0}  # one is still starting
    assert router.watch(PID + 1, "exec-2") == EXIT_0
    router.settle()
    assert router.early == {} and router.starting == 0
    assert router.watch(PID, "exec-1") is None  # too late: it was an orphan after all


def test_watched_exit_is_not_cached_while_starting() -> None:
    router = ExitRouter()
    router.watch(PID, "init")
    router.expect()
    assert router.exited(PID, EXIT_0) == "init"
    assert router.early == {}


def test_settle_never_goes_below_zero() -> None:
    router = ExitRouter()
    router.settle()
    assert router.starting == 0
    router.expect()
    assert router.starting == 1
    router.exited(PID, EXIT_0)
    assert router.early == {PID: EXIT_0}


def test_latest_early_exit_of_a_pid_wins() -> None:
    router = ExitRouter()
    router.expect()
    router.exited(PID, EXIT_0)
    router.exited(PID, KILLED)  # the pid was reused and died again
    assert router.watch(PID, "exec") == KILLED


def test_later_watch_of_a_pid_replaces_the_earlier() -> None:
    router = ExitRouter()
    router.watch(PID, "old")
    router.watch(PID, "new")
    assert router.exited(PID, EXIT_0) == "new"


def test_watch_must_come_before_settle() -> None:
    """The shell's order on PidKnown: ``watch`` the pid, then ``settle``.

    Settling first empties the cache when this was the only starting process,
    and an exit that came early is lost. This pins that contract.
    """
    good = ExitRouter()
    good.expect()
    good.exited(PID, KILLED)
    assert good.watch(PID, "init") == KILLED
    good.settle()

    bad = ExitRouter()
    bad.expect()
    bad.exited(PID, KILLED)
    bad.settle()
    assert bad.watch(PID, "init") is None
