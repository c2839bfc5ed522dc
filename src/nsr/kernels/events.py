"""TensorBoard event files, checksummed in C (``crc32c.c``).

Every record of an event file carries two masked CRC-32C checksums, which TensorBoard (without
TensorFlow) computes in pure Python, byte by byte, in its writer thread: for a small population's
per-epoch scalars that costs more than the epoch's training, and a figure's PNG takes tens of
milliseconds. :func:`use_native_checksums` gives TensorBoard's record writer the same function in
C (the same values, tested against TensorBoard's own)."""
from __future__ import annotations

import ctypes
import itertools
import os
import socket
import struct
import time

from nsr.kernels.build import Library, Signature, i64

LIBRARY = Library("crc32c", ["crc32c.c"], [Signature("nsr_masked_crc32c", data=ctypes.c_char_p, n=i64)])


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C of ``data`` as TFRecord files store it (TensorBoard's ``masked_crc32c``)."""
    if LIBRARY.load() is None:
        raise RuntimeError(f"nsr native kernels unavailable: {LIBRARY.error}")
    return LIBRARY.call("nsr_masked_crc32c", data=bytes(data), n=len(data)) & 0xFFFFFFFF


def use_native_checksums() -> bool:
    """Have TensorBoard's record writer checksum with :func:`masked_crc32c` (where the native
    kernels are built); True if it does. The files are byte for byte the same."""
    if LIBRARY.load() is None:
        return False
    from tensorboard.summary.writer import record_writer

    record_writer.masked_crc32c = masked_crc32c
    return True


_file_numbers = itertools.count()


class EventFile:
    """An event file of a run's own, written in whole buffers: TensorBoard's writer opens, appends to
    and closes its file for every event, from a thread that takes the interpreter lock from the
    training loop each time; at one event per epoch of a small population that was a quarter of the
    loop. Events are framed as TensorBoard frames them (length, masked CRC-32C of the length, the
    event, its masked CRC-32C) and the file starts with the same version record, so TensorBoard
    reads it beside the logger's own file in the same folder (it reads every ``*tfevents*`` file
    of a run). ``flush`` writes what is buffered; ``close`` flushes and closes."""

    def __init__(self, folder: str, suffix: str = ".nsr"):
        self.folder, self.suffix = folder, suffix
        self.path = os.path.join(folder, f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                                         f"{os.getpid()}.{next(_file_numbers)}{suffix}")
        self._file = None
        self._buffer: list[bytes] = []
        self.last_flush = time.monotonic()

    @staticmethod
    def record(data: bytes) -> bytes:
        """One TFRecord: the serialized event framed with its length and checksums (in C where the
        native kernels are built, else TensorBoard's own function: the same values)."""
        if LIBRARY.load() is not None:
            crc = masked_crc32c
        else:
            from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as crc
        header = struct.pack("<Q", len(data))
        return header + struct.pack("<I", crc(header)) + data + struct.pack("<I", crc(data))

    def add(self, summary, step: int, wall_time: float) -> None:
        """Buffer an event holding ``summary`` (a TensorBoard ``Summary``) at ``step``."""
        from tensorboard.compat.proto.event_pb2 import Event

        self._buffer.append(self.record(Event(summary=summary, step=int(step), wall_time=wall_time).SerializeToString()))

    def flush(self) -> None:
        """Write the buffered events (the file is made, with its version record, at the first)."""
        self.last_flush = time.monotonic()
        if not self._buffer:
            return
        if self._file is None:
            from tensorboard.compat.proto.event_pb2 import Event

            os.makedirs(self.folder, exist_ok=True)
            self._file = open(self.path, "ab")
            self._file.write(self.record(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()))
        self._file.write(b"".join(self._buffer))
        self._file.flush()
        self._buffer.clear()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
