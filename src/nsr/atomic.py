"""Atomic file writes: a reader (or a run killed midway) never sees half a file.

Checkpoints (``nsr.checkpoint.AtomicCheckpointIO``), the callbacks' PNG and CSV files and the
experiments' run folders all write through :func:`write_atomically`.
"""
from __future__ import annotations

import os
import tempfile


def write_atomically(path, write, mode: str = "wb", **open_kwargs) -> None:
    """Create or replace the file ``path`` so that it is never seen half-written: ``write(f)``
    fills a temporary file (an open file object, or its path with ``mode=None``) in the same
    folder, which ``os.replace`` then puts in place. A kill midway leaves the old file intact.
    ``open_kwargs`` (e.g. ``encoding``, ``newline``) go to ``open`` in text mode."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        if mode is None:
            os.close(fd)
            write(tmp)
        else:
            with os.fdopen(fd, mode, **open_kwargs) as f:
                write(f)
        umask = os.umask(0)  # mkstemp made the file 0600; give it what open() would have
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
