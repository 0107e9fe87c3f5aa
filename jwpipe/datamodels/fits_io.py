"""Low-level FITS reading and writing for the data models.

Reading memory-maps array data and converts only the slices asked for, so a step can pull one block
of integrations from a multi-gigabyte ``_uncal`` file. Writing assembles the file block by block
from arrays or from lazy sources (never holding a second full copy), into a temporary file that is
renamed over the target only when complete: a failed write leaves nothing behind.
"""

from __future__ import annotations

import io
import itertools
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from astropy.io import fits

from .._ext import _convert
from ..errors import InputFileError, NotFitsError
from .spill import release_pages

__all__ = ["LazyArray", "open_hdulist", "FitsAssembler", "atomic_path", "BLOCK",
           "header_bytes", "stored_pieces", "temp_beside", "replace_file",
           "remove_quietly"]

BLOCK = 2880
#: Largest piece converted at once when writing, and read at once when converting on read: small
#: enough to stay in cache-friendly sizes, large enough that per-call costs do not matter.
_CHUNK_BYTES = 4 * 1024 * 1024
_READ_CHUNK = 4 * 1024 * 1024

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

    def read_stored(self, key=slice(None), out=None) -> np.ndarray:
        """``self[key]`` as stored in the file (big-endian, before BZERO/BSCALE), for kernels
        that convert while they compute. ``out`` as in :meth:`read`."""
        plan = self._plan(key)
        if plan is None:
            result = np.array(self._memmap()[key], dtype=self.stored)
        else:
            result = self._read_planned(plan, self.stored, out, convert=False)
        if out is not None and result is not out:
            if out.shape != result.shape:
                raise ValueError(f"out has shape {out.shape}; the read gives {result.shape}")
            np.copyto(out, result)
            return out
        return result

    def read(self, key=slice(None), dtype=None, out=None, nthreads: int = 1) -> np.ndarray:
        """Read ``self[key]`` converted to ``dtype`` (default: the physical dtype).

        Integer and unit-step slice keys (the block reads of the pipeline, subarray cuts of
        references) are read with positional file reads straight into a new array (or ``out``,
        an array of the result's shape and dtype, reused to save fresh memory) and converted in
        place chunk by chunk: no memory map stays resident, and no full-size big-endian copy is
        made. Other keys go through the memory map. ``nthreads`` threads convert raw 16-bit
        ramps to float32.
        """
        plan = self._plan(key)
        dtype = np.dtype(dtype or self.dtype)
        if plan is None:
            result = self.convert(self._memmap()[key], dtype)
        else:
            result = self._read_planned(plan, dtype, out, nthreads=nthreads)
        if out is not None and result is not out:
            if out.shape != result.shape:
                raise ValueError(f"out has shape {out.shape}; the read gives {result.shape}")
            np.copyto(out, result, casting="unsafe")
            return out
        return result

    # -- positional reads ------------------------------------------------------------------------
    def _plan(self, key):
        """(ranges per axis, axes kept) for a key of ints/unit slices/one Ellipsis, else None."""
        if self.size == 0 or (self.bzero not in (None, 0) and self._unsigned is None) \
                or self.bscale not in (None, 1):
            return None  # scaled data: the general path
        key = key if isinstance(key, tuple) else (key,)
        ndim = len(self.shape)
        if any(k is Ellipsis for k in key):
            if sum(1 for k in key if k is Ellipsis) > 1:
                return None
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:at] + (slice(None),) * (ndim - len(key) + 1) + key[at + 1:]
        if len(key) > ndim:
            return None
        key = key + (slice(None),) * (ndim - len(key))
        ranges, keep = [], []
        for k, n in zip(key, self.shape, strict=True):
            if isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
                i = int(k) + (n if int(k) < 0 else 0)
                if not 0 <= i < n:
                    raise IndexError(f"index {int(k)} is out of bounds for axis with size {n}")
                ranges.append((i, i + 1))
                keep.append(False)
            elif isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step != 1:
                    return None
                ranges.append((start, max(start, stop)))
                keep.append(True)
            else:
                return None
        return ranges, keep

    def _read_planned(self, plan, dtype: np.dtype, into=None, *, convert: bool = True,
                      nthreads: int = 1) -> np.ndarray:
        ranges, keep = plan
        shape = self.shape
        # Read whole rows (the last axis in full) and cut columns afterwards: one read per row
        # band instead of one per row.
        cut = ranges[-1]
        read_ranges = list(ranges)
        if cut != (0, shape[-1]):
            read_ranges[-1] = (0, shape[-1])
        out_shape = tuple(b - a for a, b in read_ranges)
        # Axes from `first` on are read as one contiguous run per index of the axes before it.
        first = len(shape) - 1
        while first > 0 and read_ranges[first] == (0, shape[first]):
            first -= 1
        run_elems = int(np.prod(out_shape[first:], dtype=np.int64))
        outer = [range(a, b) for a, b in read_ranges[:first]]
        strides = [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape))]
        widened = cut != read_ranges[-1]
        final_shape = tuple(b - a for (a, b), k in zip(ranges, keep, strict=True) if k)
        if (into is not None and not widened and into.dtype == dtype and into.flags.c_contiguous
                and into.shape == final_shape):
            out = into.reshape(out_shape)  # a view: the read fills ``into``
        else:
            into = None
            out = np.empty(out_shape, dtype)
        if out.size:
            flat = out.reshape(-1)
            itemsize = self.stored.itemsize
            direct = not convert or dtype == self._native_stored()
            buffer = None if direct else np.empty(
                min(run_elems, max(1, _READ_CHUNK // itemsize)), self.stored)
            fused = (not direct and self.stored == np.dtype(">i2") and self._unsigned is not None
                     and dtype == np.float32)
            with open(self.path, "rb", buffering=0) as fh:
                for n, index in enumerate(itertools.product(*outer)):
                    elem = sum(i * strides[a] for a, i in enumerate(index))
                    elem += read_ranges[first][0] * strides[first]
                    start = n * run_elems
                    if direct:
                        target = flat[start:start + run_elems]
                        _read_into(fh, self.offset + elem * itemsize, target.view(np.uint8))
                        if convert:
                            self._to_native(target.view(self.stored))
                        continue
                    for lo in range(0, run_elems, buffer.size):
                        m = min(buffer.size, run_elems - lo)
                        chunk = buffer[:m]
                        _read_into(fh, self.offset + (elem + lo) * itemsize, chunk.view(np.uint8))
                        dest = flat[start + lo:start + lo + m]
                        if fused:  # raw ramps: one compiled pass (swap, unsign, widen)
                            _convert.be_u16_to_f32(chunk.view(np.uint16), dest, nthreads)
                        else:
                            np.copyto(dest, self._to_native(chunk), casting="unsafe")
        if into is not None:
            return into
        if widened:
            out = np.ascontiguousarray(out[..., cut[0]:cut[1]])
        return out.reshape(final_shape)

    def _native_stored(self) -> np.dtype:
        """The dtype a stored buffer has after :meth:`_to_native` (before any cast)."""
        return self._unsigned if self._unsigned is not None else self.stored.newbyteorder("=")

    def _to_native(self, stored: np.ndarray) -> np.ndarray:
        """Turn a freshly read buffer of stored values into physical values, in place."""
        if stored.dtype.itemsize > 1 and not stored.dtype.isnative:
            stored = stored.byteswap(inplace=True).view(stored.dtype.newbyteorder("="))
        else:
            stored = stored.view(stored.dtype.newbyteorder("="))
        if self._unsigned is not None:
            unsigned = stored.view(self._unsigned)
            np.bitwise_xor(unsigned, self._unsigned.type(1 << (8 * self._unsigned.itemsize - 1)),
                           out=unsigned)
            return unsigned
        return stored

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


def _read_into(fh, offset: int, target: np.ndarray) -> None:
    """Fill the uint8 array ``target`` with bytes at ``offset`` of the unbuffered file ``fh``."""
    view = memoryview(target)
    fh.seek(offset)
    done = 0
    while done < len(view):
        n = fh.readinto(view[done:])
        if not n:
            raise InputFileError(f"{fh.name}: unexpected end of file at byte {offset + done}")
        done += n


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
        raise NotFitsError(f"{path}: not a FITS file (it does not start with a FITS primary "
                           "header)")
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


def stored_pieces(chunk, dtype: np.dtype):
    """The values of ``chunk`` as FITS stores them (big-endian, BZERO applied), a few MB at a time.

    Yields C-contiguous uint8 arrays in file order; each is only valid until the next one is asked
    for (plain types are byte-swapped into one reused buffer, not a new array per piece).
    """
    dtype = np.dtype(dtype)
    flat = np.asarray(chunk).reshape(-1)  # a view when contiguous (the usual case), else one copy
    piece = max(1, _CHUNK_BYTES // dtype.itemsize)
    _, stored_dtype, bzero = _STORAGE[dtype]
    if bzero is None and dtype.itemsize > 1 and flat.dtype == dtype:
        buffer = np.empty(min(piece, flat.size), stored_dtype)
        for lo in range(0, flat.size, piece):
            part = buffer[:min(piece, flat.size - lo)]
            np.copyto(part, flat[lo:lo + part.size])
            yield part.view(np.uint8)
        return
    for lo in range(0, flat.size, piece):
        yield np.ascontiguousarray(_to_storage(flat[lo:lo + piece], dtype)).view(np.uint8)


def header_bytes(header: fits.Header, size: int | None = None) -> bytes:
    """``header`` as FITS bytes: its cards, END, and space fill to a whole number of blocks.

    With ``size`` (a multiple of :data:`BLOCK`, at least the header's own size) the header fills
    exactly ``size`` bytes: blank keyword records go before END so that END lands in the last
    block, which is how FITS headers keep reserved room (FITS 4.0, section 4.4.2.4). Raises
    ValueError when the header needs more than ``size`` bytes.
    """
    text = header.tostring(endcard=False, padding=False)
    records = len(text) // 80
    if size is None:
        size = (records + 1 + 35) // 36 * BLOCK
    if size % BLOCK or (records + 1) * 80 > size:
        raise ValueError(f"a header of {records + 1} records does not fit in {size} bytes")
    blanks = max(0, size // 80 - 36 - records)  # END must be in the last block
    text += " " * (80 * blanks) + "END".ljust(80)
    return (text + " " * (size - len(text))).encode("ascii")


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
        self.fh.write(header_bytes(header))

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
                total += self._write_array(chunk, dtype)
                release_pages(chunk)  # a spilled (memory-mapped) source: drop what was read
        self.fh.write(b"\0" * _pad(total))
        self.count += 1

    def _write_array(self, chunk, dtype: np.dtype) -> int:
        """Write one chunk in its stored representation, converting a few MB at a time."""
        nbytes = 0
        for piece in stored_pieces(chunk, dtype):
            self.fh.write(piece)
            nbytes += piece.size
        return nbytes

    def bytes_table(self, extname: str, column: str, payload: bytes) -> None:
        """Write a one-row binary table holding ``payload`` in a single ``{n}B`` column.

        This is the layout of the JWST ``ASDF`` extension (column ``ASDF_METADATA``), byte for
        byte what astropy writes for it, without astropy's table machinery: building a
        ``BinTableHDU`` imports ``astropy.table`` (and through its I/O registry ``asdf``),
        about 0.12 s of every process that writes a product.
        """
        n = len(payload)
        self._table(extname, n, 1, [("TTYPE1", column), ("TFORM1", f"{n}B")], payload)

    def record_table(self, extname: str, records: np.ndarray) -> bool:
        """Write a structured array as a binary-table extension, as astropy would store it.

        Handles the column types of the JWST tables (GROUP, INT_TIMES, ...): signed and
        unsigned integers (unsigned through TZERO), floats, booleans and byte strings, scalar or
        fixed-shape. Building an astropy ``BinTableHDU`` instead imports ``astropy.table``
        (~0.2 s of every process writing a ``_rateints``). Returns False, writing nothing, for a
        column type it does not handle (the caller then goes through astropy).
        """
        records = np.asarray(records)
        names = records.dtype.names
        if not names or records.ndim != 1:
            return False
        cards, stored = [], []
        for index, name in enumerate(names, start=1):
            column = _table_column(records.dtype.fields[name][0])
            if column is None:
                return False
            code, count, shape, zero, stored_dtype = column
            tform = code if count == 1 and code != "A" else f"{count}{code}"
            cards += [(f"TTYPE{index}", name), (f"TFORM{index}", tform)]
            if len(shape) > 1:
                cards.append((f"TDIM{index}", "(" + ",".join(map(str, shape[::-1])) + ")"))
            if zero:
                cards += [(f"TSCAL{index}", 1), (f"TZERO{index}", zero)]
            stored.append((name, stored_dtype, shape))
        layout = np.dtype(stored)
        data = np.empty(records.shape, layout)
        for name, stored_dtype, _ in stored:
            values = records[name]
            if stored_dtype.kind == "i" and values.dtype.kind == "u":  # unsigned via TZERO
                values = values.view(values.dtype.str.replace("u", "i")) ^ np.array(
                    1 << (8 * values.dtype.itemsize - 1), values.dtype).view(
                        values.dtype.str.replace("u", "i"))
            elif values.dtype.kind == "b":
                values = np.where(values, ord("T"), ord("F")).astype(np.uint8)
            data[name] = values
        self._table(extname, layout.itemsize, records.shape[0], cards, data.tobytes(),
                    tfields=len(names))
        return True

    def _table(self, extname: str, row_bytes: int, nrows: int, cards, payload: bytes,
               tfields: int = 1) -> None:
        """A binary-table HDU: header (column ``cards`` after the mandatory keywords, as astropy
        orders them) and ``payload``, the rows as stored."""
        header = fits.Header()
        header["XTENSION"] = ("BINTABLE", "binary table extension")
        header["BITPIX"] = (8, "array data type")
        header["NAXIS"] = (2, "number of array dimensions")
        header["NAXIS1"] = (row_bytes, "length of dimension 1")
        header["NAXIS2"] = (nrows, "length of dimension 2")
        header["PCOUNT"] = (0, "number of group parameters")
        header["GCOUNT"] = (1, "number of groups")
        header["TFIELDS"] = (tfields, "number of table fields")
        for key, value in cards:
            header[key] = value
        header["EXTNAME"] = (extname, "extension name")
        self._write_header(header)
        self.fh.write(payload)
        self.fh.write(b"\0" * _pad(len(payload)))
        self.count += 1

    def hdu(self, hdu) -> None:
        """Write an astropy table (or other) extension HDU as astropy serialises it."""
        buf = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf, output_verify="silentfix")
        data = buf.getvalue()
        primary_size = len(fits.PrimaryHDU().header.tostring())
        self.fh.write(data[primary_size:])
        self.count += 1


#: FITS binary-table codes of numpy kinds/sizes: (code, TZERO for unsigned or 0).
_TABLE_CODES = {("i", 2): "I", ("i", 4): "J", ("i", 8): "K", ("f", 4): "E", ("f", 8): "D",
                ("u", 1): "B", ("b", 1): "L", ("i", 1): "B"}


def _table_column(dtype: np.dtype):
    """(TFORM code, repeat count, shape, TZERO, stored big-endian dtype) of a column, or None."""
    shape = dtype.shape
    base = dtype.base
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if base.kind == "S":
        return None if shape else ("A", base.itemsize, (), 0, base)
    if base.kind == "u" and base.itemsize > 1:
        code = _TABLE_CODES.get(("i", base.itemsize))
        zero = 1 << (8 * base.itemsize - 1)
        return code, count, shape, zero, np.dtype(f">i{base.itemsize}")
    if base.kind == "i" and base.itemsize == 1:
        return None  # FITS bytes are unsigned; astropy's TZERO=-128 convention handles it
    code = _TABLE_CODES.get((base.kind, base.itemsize))
    if code is None:
        return None
    stored = np.dtype("u1") if base.kind == "b" else base.newbyteorder(">")
    return code, count, shape, 0, stored


def temp_beside(path) -> Path:
    """A new, empty temporary file in ``path``'s folder (made if needed), named after it.

    Products are written under this name and renamed over ``path`` only when complete. The file
    gets the usual permissions of a new file (``mkstemp`` makes it 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


def replace_file(tmp, path) -> None:
    """Rename the finished file ``tmp`` over ``path`` atomically (:func:`os.replace`).

    A plain rename on purpose: over an existing product, ext4 writes the new file back inside
    the call (its ``auto_da_alloc`` guard for programs that never fsync), ~0.1-0.3 s per 500 MB.
    That is the price of a crash of the machine leaving the old product or the new one, never an
    empty file under the product's name; an exchange of the two names would skip it and lose
    that guarantee.
    """
    os.replace(tmp, path)


def remove_quietly(path) -> None:
    """Unlink ``path`` if it still exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@contextmanager
def atomic_path(path, overwrite: bool = True):
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    The temporary file is removed if the block raises, so no half-written product is left. It
    exists (empty) when the block starts: open it with ``r+b``, not ``wb``. Truncating a file on
    ext4 (as ``wb`` does, even an empty one) makes its close start writing back everything
    written since (the ``auto_da_alloc`` heuristic for rewrite-in-place): about 0.2 s per 500 MB,
    spent inside the pipeline rather than by the kernel's flusher later.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists and overwrite is False")
    tmp = temp_beside(path)
    try:
        yield tmp
        replace_file(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
