"""The exit file: ``EXIT_DIR/CID`` (and ``PERSIST_DIR/exit``) holds the exit code.

Podman reads ``EXIT_DIR/CID`` to learn that the container (or exec session) ended and
how (the decimal code, no newline; -1 when ``--timeout`` killed it), and takes the file's
time as the time it ended. Rule: the file appears whole or not at all (written beside,
then renamed over, as conmon's ``g_file_set_contents``).
"""

import os


def write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically; OSError if that failed."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)
