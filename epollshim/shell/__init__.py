"""The shell: every file descriptor, system call and signal lives here.

Rule: only ``loop`` touches the selector; everything else registers callbacks
with it. Nothing here decides what a process does next: that is
``epollshim.core``.
"""
