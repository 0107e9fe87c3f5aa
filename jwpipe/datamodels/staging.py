"""Staged products: a streamed product's FITS file laid out before its data exist.

A stage-1 ``_rateints`` product is produced one block of integrations at a time. Gathering the
blocks in temporary (disk-backed) arrays and copying those into the product file at the end
writes every byte twice and reads it once more, which is most of the I/O of a time series.
Staging lays the product file out as soon as the shapes are known -- a reserved header slot per
HDU, each image's data at its final offset -- in a temporary file beside the target. Blocks go
straight to their place (``array[start:stop] = values``, one positional write per piece), and
saving the model to the target writes the final headers into their slots, appends the HDUs that
follow the staged images (tables, ASDF), and renames the file into place: nothing is visible
under the final name before it is complete, and a staged file that is never saved is removed.

Header room: metadata can still change between staging and saving (step statuses, the file name
and date), so each header gets a few records more than it needs when staged
(:data:`SPARE_PRIMARY`, :data:`SPARE_EXTENSION`); unused room is kept as blank records before
END, the FITS way of reserving header space. If a final header outgrows its slot, or the model
no longer holds the staged arrays (a later step replaced them, or read them into memory), or it
is saved elsewhere, :meth:`StagedProduct.commit` declines and the model is written in full by the
ordinary writer, which reads the staged data.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fits_io import (
    _STORAGE,
    BLOCK,
    FitsAssembler,
    LazyArray,
    _image_header,
    _pad,
    header_bytes,
    remove_quietly,
    replace_file,
    stored_pieces,
    temp_beside,
)
from .spill import pwrite_all

__all__ = ["SPARE_EXTENSION", "SPARE_PRIMARY", "StagedArray", "StagedProduct"]

#: Header records reserved beyond a header's size when staged, for keywords set before the
#: product is saved. The primary header receives the step statuses (stage 1 adds about 11 after
#: its first block, at most about 20), so a block's worth; extension headers hold metadata that is
#: settled by then (SCI: units, WCS, times), so a few. Whether the room is used up depends on
#: where the block boundaries fall: the SOSS benchmark's ``_rateints`` comes out the same, byte for
#: byte but for DATE, as the ordinary writer's; the NIRCam SUB160 test case's primary header has
#: one block more, of blank records. A header that outgrows its room costs a full rewrite.
SPARE_PRIMARY = 36
SPARE_EXTENSION = 8


class _TempFile:
    """The staged file's temporary path and descriptor; removed when dropped unless kept."""

    def __init__(self, target: Path):
        self.path = temp_beside(target)
        # No O_TRUNC: on ext4, truncating makes the last close flush the file (auto_da_alloc).
        fd = os.open(self.path, os.O_RDWR | getattr(os, "O_BINARY", 0))
        self._state = {"fd": fd, "path": str(self.path)}
        self._cleanup = weakref.finalize(self, _drop, self._state)

    @property
    def fd(self) -> int:
        return self._state["fd"]

    @property
    def live(self) -> bool:
        """Still open for writing (neither closed for the rename nor discarded)."""
        return self._cleanup.alive and self._state["fd"] >= 0

    def close(self) -> None:
        """Close the descriptor (before renaming: Windows renames no open file)."""
        _close(self._state)

    def keep(self) -> None:
        """The file has its final name: never remove it."""
        self._cleanup.detach()
        _close(self._state)

    def discard(self) -> None:
        """Close and remove the file (idempotent)."""
        self._cleanup()


def _close(state: dict) -> None:
    fd, state["fd"] = state["fd"], -1
    if fd >= 0:
        os.close(fd)


def _drop(state: dict) -> None:
    try:
        _close(state)
    finally:
        remove_quietly(state["path"])


class StagedArray(LazyArray):
    """An image of a staged product: a :class:`LazyArray` over its place in the staged file that
    also takes rows, ``array[start:stop] = values``, written straight into the file.

    Parameters
    ----------
    file : _TempFile
        The staged file.
    offset : int
        Byte offset of the data in the file.
    shape : tuple of int
    dtype : numpy dtype
        Physical dtype (stored as FITS stores it: big-endian, unsigned through BZERO).
    """

    def __init__(self, file: _TempFile, offset: int, shape, dtype):
        dtype = np.dtype(dtype)
        _, stored, bzero = _STORAGE[dtype]
        super().__init__(file.path, offset, shape, stored, bzero, None)
        self._file = file
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.stored.itemsize

    def __setitem__(self, key, values) -> None:
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            start = int(key) + (self.shape[0] if key < 0 else 0)
            key = slice(start, start + 1)
            values = np.asarray(values)[np.newaxis]
        if not isinstance(key, slice):
            raise TypeError("a staged array takes whole rows: array[start:stop] = values")
        start, stop, step = key.indices(self.shape[0])
        if step != 1:
            raise TypeError("a staged array takes contiguous rows (step 1)")
        values = np.asarray(values)
        expected = (max(0, stop - start), *self.shape[1:])
        if values.shape != expected:
            raise ValueError(f"rows {start}:{stop} of a staged array need shape {expected}, "
                             f"got {values.shape}")
        if not self._file.live:
            raise ValueError(f"{self.path}: the staged product was already saved or discarded")
        offset = self.offset + start * self._row_bytes
        for piece in stored_pieces(values, self.dtype):
            pwrite_all(self._file.fd, piece, offset)
            offset += piece.size


@dataclass
class _Slot:
    """Reserved room for one HDU's header (``array`` None: the primary header)."""

    offset: int
    size: int
    array: StagedArray | None


class _Declined(Exception):
    """The model no longer matches the staged layout: write it in full instead."""


class StagedProduct:
    """The FITS file of ``model`` at ``path``, laid out for its leading image arrays.

    Parameters
    ----------
    model : DataModel
        Gives the class (array order, extension names, dtypes) and the metadata the header room
        is sized from; its own arrays are not used.
    path : path
        The product's final name; the staged file is a temporary file in the same folder.
    shapes : dict of str -> tuple of int
        Shapes of the staged arrays: the first image arrays the model class writes, in order
        (``data``, ``err``, ``dq``... of a CubeModel).

    Attributes
    ----------
    arrays : dict of str -> StagedArray
        Where the stream writes (attached to a model by :meth:`attach`).
    """

    def __init__(self, model, path, shapes: dict):
        cls = type(model)
        order = [name for name in cls.arrays if name in shapes]
        if set(order) != set(shapes) or order != list(cls.arrays)[:len(order)]:
            raise ValueError(f"{cls.__name__}: only its leading arrays "
                             f"{list(cls.arrays)[:len(shapes)]} can be staged, not {list(shapes)}")
        self.model_class = cls
        self.target = Path(path)
        self.file = _TempFile(self.target)
        try:
            primary = _image_header((), np.dtype("uint8"), model._header_cards("PRIMARY"), True)
            self.slots = [_Slot(0, _room(primary, SPARE_PRIMARY), None)]
            offset = self.slots[0].size
            self.arrays = {}
            for name in order:
                shape = tuple(int(n) for n in shapes[name])
                dtype = np.dtype(cls.arrays[name].dtype)
                header = _image_header(shape, dtype, model._image_cards(name), False)
                size = _room(header, SPARE_EXTENSION)
                array = StagedArray(self.file, offset + size, shape, dtype)
                self.slots.append(_Slot(offset, size, array))
                self.arrays[name] = array
                nbytes = array.size * array.stored.itemsize
                offset += size + nbytes + _pad(nbytes)
            self.end = offset
            # The data regions exist (as holes, reading zeros) until written; appending at
            # commit starts here.
            os.ftruncate(self.file.fd, self.end)
        except BaseException:
            self.file.discard()
            raise

    def attach(self, model) -> None:
        """Make the staged arrays ``model``'s arrays, and ``model`` saveable in place."""
        if type(model) is not self.model_class:
            raise TypeError(f"staged for a {self.model_class.__name__}, not "
                            f"{type(model).__name__}")
        for name, array in self.arrays.items():
            setattr(model, name, array)
        model.__dict__["_staged"] = self

    def commit(self, model, path, overwrite: bool = True) -> bool:
        """Finish the file for ``model`` and rename it to ``path``.

        Returns False, leaving the staged data as they are, when the file cannot be finished in
        place: already committed or discarded, ``path`` in another folder, staged arrays replaced
        in ``model``, or a header grown beyond its room. Any error while finishing removes the
        staged file (as for any failed write) and is raised.
        """
        path = Path(path)
        if not self.file.live or type(model) is not self.model_class:
            return False
        if any(model._arrays.get(name) is not array for name, array in self.arrays.items()):
            return False
        if not (path.parent.exists() and os.path.samefile(path.parent, self.file.path.parent)):
            return False
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path}: exists and overwrite is False")
        try:
            with open(self.file.path, "r+b") as fh:
                if os.fstat(fh.fileno()).st_size != self.end:
                    fh.truncate(self.end)  # whatever a declined attempt appended
                fh.seek(self.end)
                out = _SlotWriter(fh, self)
                try:
                    model._write(out)
                    out.check_all_filled()
                except _Declined:
                    return False
            self.file.close()
            replace_file(self.file.path, path)
        except BaseException:
            self.discard()
            raise
        self.file.keep()
        for array in self.arrays.values():  # the model's arrays now read the product itself
            array.path, array._mm = str(path), None
        return True

    def discard(self) -> None:
        """Remove the staged file unless it was committed (idempotent)."""
        self.file.discard()


def _room(header, spare: int) -> int:
    """Bytes reserved for ``header``: its records, END and ``spare`` more, in whole blocks."""
    records = len(header.tostring(endcard=False, padding=False)) // 80 + 1 + spare
    return -(-records * 80 // BLOCK) * BLOCK


class _SlotWriter(FitsAssembler):
    """Writes a model's HDUs into a staged file: headers of staged HDUs into their slots (their
    data are already in place), every later HDU appended at the end."""

    def __init__(self, fh, staged: StagedProduct):
        super().__init__(fh)
        self.staged = staged
        self.next = 0

    def primary(self, cards) -> None:
        self._fill(None, _image_header((), np.dtype("uint8"), cards, primary=True))

    def image(self, source, dtype, cards) -> None:
        if self.next == len(self.staged.slots):
            super().image(source, dtype, cards)
            return
        if np.dtype(dtype) != getattr(source, "dtype", None):
            raise _Declined
        self._fill(source, _image_header(source.shape, dtype, cards, primary=False))

    def _fill(self, source, header) -> None:
        if self.next == len(self.staged.slots):
            raise _Declined
        slot = self.staged.slots[self.next]
        if source is not slot.array:
            raise _Declined
        try:
            data = header_bytes(header, slot.size)
        except ValueError:
            raise _Declined from None  # grown beyond its room
        pwrite_all(self.staged.file.fd, data, slot.offset)
        self.next += 1
        self.count += 1

    def check_all_filled(self) -> None:
        """Every staged HDU was written (before anything was appended)."""
        if self.next != len(self.staged.slots):
            raise _Declined

    def record_table(self, extname, records) -> bool:
        self.check_all_filled()
        return super().record_table(extname, records)

    def bytes_table(self, extname, column, payload) -> None:
        self.check_all_filled()
        super().bytes_table(extname, column, payload)

    def hdu(self, hdu) -> None:
        self.check_all_filled()
        super().hdu(hdu)
