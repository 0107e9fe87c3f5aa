"""Arrays that spill to disk when large, so products of long time series fit in bounded memory.

A ``_rateints`` product of 10,000 integrations of a 256x2048 subarray holds 10 GB of arrays; it
is filled one block of integrations at a time and written in chunks, so backing it with a
temporary memory-mapped file keeps the process's own memory flat.
"""

from __future__ import annotations

import os
import tempfile
import weakref

import numpy as np

__all__ = ["allocate", "SPILL_BYTES"]

#: Arrays larger than this are backed by a temporary file (override: JWPIPE_SPILL_MB).
SPILL_BYTES = int(float(os.environ.get("JWPIPE_SPILL_MB", "512")) * 2**20)


def allocate(shape, dtype, fill=None, spill_dir=None) -> np.ndarray:
    """An array of ``shape``/``dtype``: in memory when small, else a temp-file memory map.

    Parameters
    ----------
    shape : tuple of int
    dtype : numpy dtype
    fill : scalar, optional
        Initial value (default: uninitialised for memory, zeros for a fresh file).
    spill_dir : path, optional
        Folder for the temporary file (default: the system temporary folder). The file is
        deleted when the array is garbage-collected.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes <= SPILL_BYTES:
        return np.empty(shape, dtype) if fill is None else np.full(shape, fill, dtype)
    fd, path = tempfile.mkstemp(prefix="jwpipe-spill-", suffix=".dat", dir=spill_dir)
    os.close(fd)
    array = np.memmap(path, dtype=dtype, mode="w+", shape=tuple(shape))
    # Unlinking now would work on Linux, but not on Windows; remove when the map goes away.
    weakref.finalize(array, _remove, path)
    if fill not in (None, 0):
        array[...] = fill
    return array


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
