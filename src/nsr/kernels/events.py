"""TensorBoard event files, checksummed in C (``crc32c.c``).

Every record of an event file carries two masked CRC-32C checksums, which TensorBoard (without
TensorFlow) computes in pure Python, byte by byte, in its writer thread: for a small population's
per-epoch scalars that costs more than the epoch's training, and a figure's PNG takes tens of
milliseconds. :func:`use_native_checksums` gives TensorBoard's record writer the same function in
C (the same values, tested against TensorBoard's own)."""
from __future__ import annotations

import ctypes

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
