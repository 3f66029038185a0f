"""Tools for tests, the demo and benchmarks (never imported by a shim).

Rule of this package: it may use ``subprocess`` (ruff's ban is lifted for ``epollshim/tools``)
because no shim process imports it; everything here runs in a test or tool process.
"""
