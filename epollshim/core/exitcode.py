"""Turn a wait status into the 0..255 exit code a shim reports.

A normal exit reports WEXITSTATUS; a death by signal N reports 128 + N (the
shell convention tini, conmon and containerd-shim-runc-v2 all follow).
Pure arithmetic on the status word so the core needs no ``os`` import.
"""


def from_wait_status(status: int) -> int:
    """Exit code for a raw ``waitpid`` status word (Linux encoding)."""
    sig = status & 0x7F
    if sig == 0:  # WIFEXITED
        return (status >> 8) & 0xFF
    if sig == 0x7F:  # WIFSTOPPED: not an exit; callers only pass exits
        raise ValueError(f"wait status {status:#x} is a stop, not an exit")
    return min(128 + sig, 255)  # WIFSIGNALED
