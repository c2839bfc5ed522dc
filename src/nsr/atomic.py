"""Atomic file writes: a reader (or a run killed midway) never sees half a file.

Checkpoints (``nsr.checkpoint.AtomicCheckpointIO``), the callbacks' PNG and CSV files and the
experiments' run folders all write through :func:`write_atomically`. A write that fails (a full
disk, a quota) raises :class:`AtomicWriteError` naming the file and the cause, and leaves the
previous file intact and no temporary file behind.
"""
from __future__ import annotations

import errno
import os
import tempfile


class AtomicWriteError(OSError):
    """Writing ``filename`` failed (``strerror`` says why); the previous file, if any, is intact."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror} (nothing was replaced)"


class _RecordingFile:
    """A file object that remembers the ``OSError`` of a failed write: writers such as
    ``torch.save`` turn it into an error of their own that no longer says what happened."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, data):
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


def write_atomically(path, write, mode: str = "wb", **open_kwargs) -> None:
    """Create or replace the file ``path`` so that it is never seen half-written: ``write(f)``
    fills a temporary file (an open file object, or its path with ``mode=None``) in the same
    folder, which ``os.replace`` then puts in place. A kill midway leaves the old file intact.
    ``open_kwargs`` (e.g. ``encoding``, ``newline``) go to ``open`` in text mode. A failed write
    (e.g. no space left) raises :class:`AtomicWriteError` naming ``path`` and the cause."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    tmp, recorder = None, None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
        if mode is None:
            os.close(fd)
            write(tmp)
        else:
            with os.fdopen(fd, mode, **open_kwargs) as f:
                recorder = _RecordingFile(f)
                write(recorder)
        umask = os.umask(0)  # mkstemp made the file 0600; give it what open() would have
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except AtomicWriteError:
        raise
    except OSError as e:
        raise AtomicWriteError(e.errno, e.strerror or str(e), path) from None
    except Exception:
        cause = recorder.error if recorder is not None else None
        if cause is None:
            raise
        raise AtomicWriteError(cause.errno or errno.EIO, cause.strerror or str(cause), path) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
