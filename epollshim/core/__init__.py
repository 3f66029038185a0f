"""The pure core: state machines that decide, with no IO.

Rule 1: nothing under ``epollshim.core`` imports a module that does IO
(os, socket, selectors, signal, time, ...) or reads a clock. The shell passes
the time in. ``tests/core/test_purity.py`` enforces this.
"""
