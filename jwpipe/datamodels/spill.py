"""Arrays that spill to disk when large, so products of long time series fit in bounded memory.

A ``_rateints`` product of 10,000 integrations of a 256x2048 subarray holds 10 GB of arrays; it
is filled one block of integrations at a time and written in chunks, so backing it with a
temporary memory-mapped file keeps the process's own memory flat. (A product that will be saved
is instead staged in its own file, :mod:`jwpipe.datamodels.staging`, which writes each byte
once; spilling serves the arrays that are not, or not yet, a product file: the ``_ramp`` of a
dark, the ``_fitopt`` arrays, a ``_rateints`` kept in memory.)

Memory-mapped pages a process has touched count in its resident set until they are unmapped, so
filling or reading a spilled array would still grow the peak memory with NINTS. The stage-1
driver therefore calls :func:`release_pages` after each block, the FITS writer releases each
chunk it has written, and element-wise operations on a whole spilled array (``np.bitwise_or(dq,
pixeldq, out=dq)``) run chunk by chunk, releasing as they go. Released pages stay in the file
(and the page cache); touching them again maps them back.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import weakref

import numpy as np

__all__ = ["allocate", "SPILL_BYTES", "SpillArray", "release_pages", "store_rows",
           "pwrite_all"]

#: Arrays larger than this are backed by a temporary file (override: JWPIPE_SPILL_MB). A
#: ``_rateints`` product has five such arrays: at most about 5 x 64 MB of them stay in memory.
SPILL_BYTES = int(float(os.environ.get("JWPIPE_SPILL_MB", "64")) * 2**20)

#: Bytes of a spilled array an element-wise operation handles between two releases.
_PASS_BYTES = 64 * 2**20

_LIVE: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # id -> array


class SpillArray(np.memmap):
    """A temporary-file-backed array (see :func:`allocate`).

    Element-wise ufunc calls writing into a whole spilled array are done in slabs along the
    first axis, each slab's pages released once done; results are identical to one call.
    """

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        outs = out if isinstance(out, tuple) else ((out,) if out is not None else ())
        plain_in = tuple(_plain(x) for x in inputs)
        plain_out = tuple(_plain(x) for x in outs)
        if _chunkable(ufunc, method, inputs, outs, kwargs):
            target = outs[0]
            rows = max(1, _PASS_BYTES // max(1, target[0].nbytes if target.shape[0] else 1))
            for lo in range(0, target.shape[0], rows):
                hi = min(target.shape[0], lo + rows)
                args = tuple(x[lo:hi] if _same_shape(x, target) else x for x in plain_in)
                ufunc(*args, out=plain_out[0][lo:hi], **kwargs)
                release_pages(target[lo:hi])
                for x in inputs:
                    if isinstance(x, np.ndarray) and x is not target and _same_shape(x, target):
                        release_pages(x[lo:hi])
            return target
        if plain_out:
            kwargs["out"] = plain_out
        result = getattr(ufunc, method)(*plain_in, **kwargs)
        if outs:
            return outs[0] if len(outs) == 1 else outs
        return result


def _plain(x):
    return x.view(np.ndarray) if isinstance(x, np.ndarray) else x


def _same_shape(x, target) -> bool:
    return isinstance(x, np.ndarray) and x.shape == target.shape


def _chunkable(ufunc, method, inputs, outs, kwargs) -> bool:
    if method != "__call__" or len(outs) != 1 or ufunc.nout != 1 or "where" in kwargs:
        return False
    target = outs[0]
    if not isinstance(target, SpillArray) or target.ndim == 0 or not target.flags.c_contiguous:
        return False
    for x in inputs:
        if isinstance(x, np.ndarray):
            if x.shape != target.shape and x.ndim >= target.ndim:
                return False  # broadcasting along the first axis: not sliceable by slabs
        elif not np.isscalar(x):
            return False
    return True


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
    if spill_dir is not None:
        os.makedirs(spill_dir, exist_ok=True)  # the products' folder, made before they are
    fd, path = tempfile.mkstemp(prefix="jwpipe-spill-", suffix=".dat", dir=spill_dir)
    os.close(fd)
    array = SpillArray(path, dtype=dtype, mode="w+", shape=tuple(shape))
    # Unlinking now would work on Linux, but not on Windows; remove when the map goes away.
    weakref.finalize(array, _remove, path)
    _LIVE[id(array)] = array
    if fill not in (None, 0):
        if array.ndim == 0:
            array[...] = fill
        rows = max(1, _PASS_BYTES // max(1, array[0].nbytes)) if array.ndim else 1
        for lo in range(0, array.shape[0] if array.ndim else 0, rows):
            array[lo:lo + rows] = fill
            release_pages(array[lo:lo + rows])
    return array


def store_rows(array: np.ndarray, start: int, values: np.ndarray) -> None:
    """``array[start:start + len(values)] = values``.

    Into a spilled array (the whole :class:`SpillArray`, C-contiguous values of its dtype) this
    is one positional write to its file: no page of the map is faulted in (which, done by several
    kernel threads at once, serialises on the process's memory map) and none stays resident.
    The page cache keeps the file and the map coherent.
    """
    n = len(values)
    if (isinstance(array, SpillArray) and hasattr(os, "pwrite") and array.flags.c_contiguous
            and array.base is not None and isinstance(values, np.ndarray)
            and values.dtype == array.dtype and values.flags.c_contiguous
            and values.shape[1:] == array.shape[1:] and 0 <= start <= array.shape[0] - n):
        row_bytes = array[0].nbytes if array.ndim > 1 else array.itemsize
        fd = os.open(array.filename, os.O_WRONLY)
        try:
            pwrite_all(fd, memoryview(values).cast("B"), array.offset + start * row_bytes)
        finally:
            os.close(fd)
        return
    array[start:start + n] = values


def pwrite_all(fd: int, data, offset: int) -> None:
    """Write all of ``data`` (bytes or a contiguous uint8 buffer) at ``offset`` of ``fd``."""
    view = memoryview(data)
    done = 0
    while done < len(view):  # pwrite may write less than asked
        if hasattr(os, "pwrite"):
            done += os.pwrite(fd, view[done:], offset + done)
        else:  # Windows: one writer per file here, so seek + write is safe
            os.lseek(fd, offset + done, os.SEEK_SET)
            done += os.write(fd, view[done:])


def release_pages(array=None) -> None:
    """Unmap the pages of a spilled array (or of every live one) from this process.

    The data stay in the file; only the process's resident memory shrinks. A no-op for arrays
    that are not file-backed and on systems without ``madvise``.
    """
    if not hasattr(mmap, "MADV_DONTNEED"):
        return
    targets = list(_LIVE.values()) if array is None else [array]
    for target in targets:
        owner = _memmap_of(target)
        if owner is None or owner._mmap is None or getattr(owner._mmap, "closed", False):
            continue
        mm = owner._mmap
        try:
            base = np.frombuffer(mm, np.uint8).ctypes.data
        except (TypeError, ValueError):  # closed or read-only maps
            continue
        if array is None:
            lo, hi = 0, len(mm)
        else:
            low, high = _byte_bounds(target)
            page = mmap.PAGESIZE
            lo = max(0, (low - base) // page * page)
            hi = min(len(mm), -(-(high - base) // page) * page)
        if hi > lo:
            try:
                mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
            except (OSError, ValueError):
                pass


def _memmap_of(array):
    obj = array
    while obj is not None:
        if isinstance(obj, np.memmap) and getattr(obj, "_mmap", None) is not None:
            return obj
        obj = getattr(obj, "base", None)
    return None


def _byte_bounds(array) -> tuple[int, int]:
    try:
        from numpy.lib.array_utils import byte_bounds
    except ImportError:  # numpy < 2
        byte_bounds = np.byte_bounds  # noqa: NPY201
    return byte_bounds(array)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
