"""The conmon-compatible front end: ``epollshim-conmon``, a monitor Podman can start.

Podman (4.3) starts one monitor per container and per exec session, with conmon's command
line, and talks to it through conmon's files and pipes: the sync, start and attach pipes
(``_OCI_*PIPE`` fds), the attach socket and the ``ctl``/``winsz`` FIFOs in the bundle dir,
the exit file in ``--exit-dir``, the k8s-file log and the ``--exit-command``.

Rules of this package:
* The process is driven by the seed shim's machinery (``epollshim.v0.shim.SeedShim``: the
  core state machine, the reaper, runc calls, the console socket, the control-FIFO
  reader); this package adds what differs: conmon's options, daemonizing, the pipes to
  podman, the log file, the attach socket and the exit command.
* An option podman may pass that we do not implement stops the monitor with one message
  naming the option (through the sync pipe when there is one), never a silent difference.
* Run-time imports stay lean (``tests/shell/test_imports.py``): no json, re, enum, socket,
  signal, subprocess or ctypes; ``--version`` imports nothing at all.
"""
