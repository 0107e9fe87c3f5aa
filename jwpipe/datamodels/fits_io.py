"""Low-level FITS reading and writing for the data models.

Reading memory-maps array data and converts only the slices asked for, so a step can pull one block
of integrations from a multi-gigabyte ``_uncal`` file. Writing assembles the file block by block
from arrays or from lazy sources (never holding a second full copy), into a temporary file that is
renamed over the target only when complete: a failed write leaves nothing behind.
"""

from __future__ import annotations

import io
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import InputFileError, NotFitsError

__all__ = ["LazyArray", "open_hdulist", "FitsAssembler", "atomic_path", "BLOCK"]

BLOCK = 2880
_CHUNK_BYTES = 64 * 1024 * 1024

# Stored FITS representation of each numpy dtype: (BITPIX, storage dtype, BZERO).
_STORAGE = {
    np.dtype("uint8"): (8, np.dtype("u1"), None),
    np.dtype("int8"): (8, np.dtype("u1"), -128),
    np.dtype("int16"): (16, np.dtype(">i2"), None),
    np.dtype("uint16"): (16, np.dtype(">i2"), 32768),
    np.dtype("int32"): (32, np.dtype(">i4"), None),
    np.dtype("uint32"): (32, np.dtype(">i4"), 2147483648),
    np.dtype("int64"): (64, np.dtype(">i8"), None),
    np.dtype("uint64"): (64, np.dtype(">i8"), 9223372036854775808),
    np.dtype("float32"): (-32, np.dtype(">f4"), None),
    np.dtype("float64"): (-64, np.dtype(">f8"), None),
}
_BITPIX_DTYPE = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def _unsigned_for(stored: np.dtype, bzero: float | None) -> np.dtype | None:
    """The unsigned dtype that a signed stored type with the conventional BZERO represents."""
    if bzero is None:
        return None
    for native, (_, dt, bz) in _STORAGE.items():
        if dt == stored and bz == bzero and native.kind == "u":
            return native
    return None


class LazyArray:
    """A read-only, memory-mapped FITS image that converts only the slices it is asked for.

    Parameters
    ----------
    path : str
        The FITS file.
    offset : int
        Byte offset of the data in the file.
    shape : tuple of int
        Numpy (C-order) shape.
    stored : numpy.dtype
        Big-endian dtype of the bytes on disk.
    bzero, bscale : float or None
        FITS scaling keywords.
    """

    def __init__(self, path, offset, shape, stored, bzero=None, bscale=None):
        self.path = str(path)
        self.offset = int(offset)
        self.shape = tuple(int(n) for n in shape)
        self.stored = np.dtype(stored)
        self.bzero = bzero
        self.bscale = bscale
        self._unsigned = _unsigned_for(self.stored, bzero) if (bscale in (None, 1)) else None
        if self._unsigned is not None:
            self.dtype = self._unsigned
        elif bzero not in (None, 0) or bscale not in (None, 1):
            self.dtype = np.dtype("float32") if self.stored.itemsize <= 2 else np.dtype("float64")
        else:
            self.dtype = self.stored.newbyteorder("=")
        self._mm = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def _memmap(self) -> np.ndarray:
        if self._mm is None:
            if self.size == 0:
                self._mm = np.zeros(self.shape, self.stored)
            else:
                self._mm = np.memmap(self.path, mode="r", dtype=self.stored, offset=self.offset,
                                     shape=self.shape)
        return self._mm

    def convert(self, raw: np.ndarray, dtype=None) -> np.ndarray:
        """Convert stored values to their physical value in native byte order."""
        raw = np.asarray(raw)
        if self._unsigned is not None:
            signbit = np.array(1 << (8 * self.stored.itemsize - 1), dtype=self._unsigned)
            out = raw.view(self._unsigned.newbyteorder(">")) ^ signbit.astype(
                self._unsigned.newbyteorder(">"))
            return out.astype(dtype or self._unsigned)
        if self.bzero not in (None, 0) or self.bscale not in (None, 1):
            out = raw.astype(dtype or self.dtype)
            out *= self.bscale if self.bscale is not None else 1
            out += self.bzero if self.bzero is not None else 0
            return out
        return raw.astype(dtype or self.dtype)

    def read(self, key=slice(None), dtype=None) -> np.ndarray:
        """Read ``self[key]`` converted to ``dtype`` (default: the physical dtype)."""
        return self.convert(self._memmap()[key], dtype)

    def __getitem__(self, key) -> np.ndarray:
        return self.read(key)

    def __array__(self, dtype=None, copy=None):
        return self.read(slice(None), dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"LazyArray({self.path!r}, shape={self.shape}, dtype={self.dtype})"

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_mm"] = None
        return state


def open_hdulist(path) -> fits.HDUList:
    """Open a FITS file lazily, turning every failure into an error that names the file."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, not a FITS file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(30)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not head.startswith(b"SIMPLE  =") or head[29:30] != b"T":
        raise NotFitsError(f"{path}: not a FITS file (it does not start with a FITS primary header)")
    try:
        hdul = fits.open(path, memmap=True, lazy_load_hdus=False, mode="readonly")
    except Exception as exc:  # astropy raises OSError, ValueError, VerifyError...
        raise NotFitsError(f"{path}: not a readable FITS file ({exc})") from exc
    return hdul


def lazy_image(hdul: fits.HDUList, index: int, path) -> LazyArray | None:
    """A :class:`LazyArray` for image HDU ``index`` (None when the HDU has no data)."""
    hdu = hdul[index]
    header = hdu.header
    naxis = header.get("NAXIS", 0)
    if naxis == 0:
        return None
    shape = tuple(header[f"NAXIS{n}"] for n in range(naxis, 0, -1))
    stored = np.dtype(_BITPIX_DTYPE[header["BITPIX"]])
    info = hdul.fileinfo(index)
    size = int(np.prod(shape, dtype=np.int64)) * stored.itemsize
    file_size = os.path.getsize(path)
    if info["datLoc"] + size > file_size:
        extname = header.get("EXTNAME", index)
        raise InputFileError(
            f"{path}: extension {extname} is truncated ({file_size - info['datLoc']} of {size} "
            "data bytes present)")
    return LazyArray(path, info["datLoc"], shape, stored, header.get("BZERO"),
                     header.get("BSCALE"))


# -- writing ---------------------------------------------------------------------------------

def _pad(nbytes: int) -> int:
    return (-nbytes) % BLOCK


def _image_header(shape, dtype, cards, primary: bool) -> fits.Header:
    bitpix, _, bzero = _STORAGE[np.dtype(dtype)]
    header = fits.Header()
    if primary:
        header["SIMPLE"] = (True, "conforms to FITS standard")
    else:
        header["XTENSION"] = ("IMAGE", "Image extension")
    header["BITPIX"] = (bitpix, "array data type")
    header["NAXIS"] = (len(shape), "number of array dimensions")
    for n, size in enumerate(reversed(shape), start=1):
        header[f"NAXIS{n}"] = size
    if primary:
        header["EXTEND"] = True
    else:
        header["PCOUNT"] = (0, "number of parameters")
        header["GCOUNT"] = (1, "number of groups")
    if bzero is not None:
        header["BSCALE"] = 1
        header["BZERO"] = bzero
    for card in cards:
        if card.keyword in ("SIMPLE", "XTENSION", "BITPIX", "EXTEND", "PCOUNT", "GCOUNT",
                            "BSCALE", "BZERO") or card.keyword.startswith("NAXIS"):
            continue
        header.append(card, end=True)
    return header


def _to_storage(chunk: np.ndarray, dtype: np.dtype) -> np.ndarray:
    _, stored, bzero = _STORAGE[dtype]
    chunk = np.asarray(chunk, dtype=dtype)
    if bzero is not None and dtype.kind == "u" and dtype.itemsize > 1:
        signbit = dtype.type(1 << (8 * dtype.itemsize - 1))
        return (chunk ^ signbit).view(dtype.str.replace("u", "i")).astype(stored, copy=False)
    if bzero is not None and dtype.kind == "i" and dtype.itemsize == 1:
        return (chunk.astype(np.int16) + 128).astype(np.uint8)
    return chunk.astype(stored, copy=False)


class FitsAssembler:
    """Write a FITS file HDU by HDU, streaming array data in bounded chunks.

    Parameters
    ----------
    fileobj : binary file
        Open for writing, positioned at the start.
    """

    def __init__(self, fileobj):
        self.fh = fileobj
        self.count = 0

    def _write_header(self, header: fits.Header) -> None:
        self.fh.write(header.tostring().encode("ascii"))

    def primary(self, cards) -> None:
        """Write a data-less primary HDU with the given cards."""
        self._write_header(_image_header((), np.dtype("uint8"), cards, primary=True))
        self.count += 1

    def image(self, source, dtype, cards) -> None:
        """Write an image extension from an ndarray or :class:`LazyArray`, chunked on axis 0."""
        dtype = np.dtype(dtype)
        shape = tuple(source.shape)
        self._write_header(_image_header(shape, dtype, cards, primary=False))
        total = 0
        if shape and int(np.prod(shape, dtype=np.int64)):
            row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
            step = max(1, _CHUNK_BYTES // max(row_bytes, 1))
            for start in range(0, shape[0], step):
                if isinstance(source, LazyArray):
                    chunk = source.read(slice(start, start + step), dtype)
                else:
                    chunk = source[start:start + step]
                stored = _to_storage(chunk, dtype)
                self.fh.write(np.ascontiguousarray(stored).tobytes())
                total += stored.nbytes
        self.fh.write(b"\0" * _pad(total))
        self.count += 1

    def hdu(self, hdu) -> None:
        """Write an astropy table (or other) extension HDU as astropy serialises it."""
        buf = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf, output_verify="silentfix")
        data = buf.getvalue()
        primary_size = len(fits.PrimaryHDU().header.tostring())
        self.fh.write(data[primary_size:])
        self.count += 1


@contextmanager
def atomic_path(path, overwrite: bool = True):
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    The temporary file is removed if the block raises, so no half-written product is left.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists and overwrite is False")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; products get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
