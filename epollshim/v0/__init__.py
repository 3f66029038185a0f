"""The seed protocol (the first containerd-shim, restated for runc 1.1).

See ``shared/spec/shim-v0.md`` section 16: Form A ``ID BUNDLE RUNTIME`` with
``process.json`` in the process dir (containerd 0.2.x), and Form B
``STATE_DIR ID`` run from the bundle (the January 2016 seed).
"""
