"""The ``--version`` answer: conmon's two lines, so that podman's probe accepts us.

Podman 4.3 runs ``MONITOR --version`` and matches ``^(version:|conmon version)? X.Y.Z``,
requiring at least 2.0.1. We claim 2.1.6, the conmon whose interface we implement and
test against (Debian bookworm's, beside podman 4.3.1); the commit line says who we are.
Rule: this module imports nothing but ``epollshim`` (whose ``__init__`` imports nothing).
"""

from epollshim import __version__

CONMON_VERSION = "2.1.6"
TEXT = f"conmon version {CONMON_VERSION}\ncommit: epollshim-conmon {__version__}\n"
