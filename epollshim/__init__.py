"""epollshim: a container shim in one Python process, one thread, one epoll loop.

Rule 1 of this package: ``epollshim.core`` decides, everything else does IO.
"""

__version__ = "0.1.0"
