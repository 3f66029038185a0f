"""``epollshim-conmon``: the conmon-compatible monitor's entry point.

Rule: ``--version`` is answered before anything is imported (the lean launcher answers it
in /bin/sh already; this path serves pip's console script and direct calls).
"""

import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--version"]:
        from epollshim.conmon.version import TEXT

        os.write(1, TEXT.encode())
        return 0
    sys.stderr.write("epollshim-conmon: only --version is implemented so far\n")
    return 1
