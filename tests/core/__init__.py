"""Tests of the pure core: no processes, no fds, no clock; each file runs in milliseconds."""
