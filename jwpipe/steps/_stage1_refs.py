"""Shared helpers of the early stage-1 steps: reference arrays cut to the science subarray.

Every detector-level reference (mask, saturation, superbias, linearity, dark, reset) is used the
same way: open it as its model, take the part under the science subarray, convert to the dtype
the kernels want, and turn its DQ into standard flags through its DQ_DEF table. Only the slices
needed are read from the memory-mapped file.
"""

from __future__ import annotations

import numpy as np

from .base import NOT_APPLICABLE

__all__ = ["open_ref", "ref_array", "ref_dq", "dq_def_of", "subarray_key", "is_miri",
           "miri_with_groups", "exposure_int", "or_into", "irs2_rows", "to_frames",
           "NOT_APPLICABLE"]


def open_ref(path, reftype: str):
    """Open a reference file as its jwpipe model (see :func:`jwpipe.references.open_reference`)."""
    from ..references import open_reference

    return open_reference(path, reftype)


class _Probe:
    """Stands in for an array to learn which slice ``cut_to_subarray`` would take."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def __getitem__(self, key):
        return key


def subarray_key(shape, ref_meta, sci_meta, *, name: str):
    """Index tuple (for the last two axes) of the science subarray in a reference array.

    A reference in IRS2 layout (a frame axis over 2048) for an IRS2 exposure is used whole: its
    SUBSIZE keywords describe the 2048 x 2048 detector, as the science data's do.
    """
    from ..irs2 import NORMAL_SIZE, is_irs2
    from ..references import cut_to_subarray

    if (len(shape) >= 2 and max(shape[-2:]) > NORMAL_SIZE
            and is_irs2(_get(sci_meta, "exposure.readpatt"), ())):
        return (Ellipsis, slice(None), slice(None))
    probe = _Probe(shape)
    key = cut_to_subarray(probe, ref_meta, sci_meta, name=name)
    if key is probe:
        return (Ellipsis, slice(None), slice(None))
    return key


def _get(meta, key):
    return meta.get(key) if hasattr(meta, "get") else None


def irs2_rows(model):
    """For an exposure whose frames are in IRS2 layout, the DMS row mask of its normal pixels
    (:func:`jwpipe.irs2.dms_row_mask`); None for any other exposure (or frames already
    stripped by refpix)."""
    from ..irs2 import NORMAL_SIZE, dms_row_mask, readout_of
    from .base import exposure_shape

    shape = exposure_shape(model)
    if shape[-2] <= NORMAL_SIZE:
        return None
    return dms_row_mask(model.meta.get("instrument.detector"), shape[-2],
                        *readout_of(model.meta))


def to_frames(array, rows, *, fill, name: str):
    """A reference array (..., ny, nx) laid out like the exposure's frames.

    Parameters
    ----------
    array : ndarray or None
        Already cut to the science subarray: in the exposure's layout, or, for an exposure in
        IRS2 layout, in the normal 2048 x 2048 layout.
    rows : ndarray of bool or None
        From :func:`irs2_rows`; None leaves ``array`` as it is.
    fill : scalar
        The value at the reference output and the interleaved reference pixels when a
        normal-layout array is spread out.
    name : str
        The reference file, for messages.
    """
    if array is None or rows is None or array.shape[-2] == rows.size:
        return array
    if array.shape[-2] != int(rows.sum()):
        from ..errors import ReferenceFileError

        raise ReferenceFileError(f"{name}: reference frames of {array.shape[-2]} rows fit "
                                 f"neither the IRS2 frames ({rows.size} rows) nor their "
                                 f"{int(rows.sum())} normal rows")
    out = np.full(array.shape[:-2] + (rows.size, array.shape[-1]), fill, dtype=array.dtype)
    out[..., rows, :] = array
    return out


def ref_array(model, attr: str, sci_meta, *, name: str, dtype=np.float32, lead=()):
    """A reference array cut to the science subarray, as a new C-contiguous ndarray.

    Parameters
    ----------
    model : DataModel
        The opened reference.
    attr : str
        Array attribute (``"data"``, ``"dq"``, ``"coeffs"``...).
    sci_meta : Node
        Science metadata (SUBSTRT1/2, SUBSIZE1/2).
    name : str
        The reference file, for messages.
    dtype : numpy dtype
        Output dtype.
    lead : tuple of slices/ints
        Index for the leading axes, applied before reading (e.g. ``(slice(0, 10),)`` to read
        only the first 10 frames of a dark).

    Returns
    -------
    ndarray or None
        ``None`` when the reference has no such array.
    """
    if not model.has(attr):
        return None
    source = model.lazy(attr)
    key = subarray_key(source.shape, model.meta, sci_meta, name=name)
    full = tuple(lead) + (Ellipsis,) + tuple(key[-2:])
    if hasattr(source, "read"):
        out = source.read(full, np.dtype(dtype))  # a new array
    else:
        out = np.array(np.asarray(source)[full], dtype=dtype, order="C")  # never a view
    return np.ascontiguousarray(out, dtype=dtype)


def ref_dq(model, sci_meta, *, name: str, attr: str = "dq"):
    """The reference DQ array cut to the subarray and translated to standard flags (uint32)."""
    from ..references import translate_dq

    raw = ref_array(model, attr, sci_meta, name=name, dtype=np.uint32)
    if raw is None:
        return None
    return np.ascontiguousarray(translate_dq(raw, dq_def_of(model), name=name), dtype=np.uint32)


def dq_def_of(model):
    """The reference's DQ_DEF table as (BIT, VALUE, NAME) rows, or None.

    VALUE is recomputed from BIT when the table has a BIT column: DQ_DEF VALUE columns are
    unsigned 32-bit (stored with TZERO), and a reader that returns the stored signed integers
    would otherwise shift every value by 2**31.
    """
    table = model.dq_def if "dq_def" in type(model).tables else None
    if table is None or not getattr(table, "dtype", None) or not table.dtype.names:
        return table
    names = {n.upper(): n for n in table.dtype.names}
    if "BIT" not in names or "NAME" not in names:
        return table
    rows = []
    for row in table:
        bit = int(row[names["BIT"]])
        rows.append((bit, 1 << bit if 0 <= bit < 32 else 0, row[names["NAME"]]))
    return rows


def is_miri(meta) -> bool:
    """Whether the exposure is from MIRI (by INSTRUME, else DETECTOR)."""
    instrument = str(meta.get("instrument.name") or "").upper()
    if instrument:
        return instrument == "MIRI"
    return str(meta.get("instrument.detector") or "").upper().startswith("MIR")


def miri_with_groups(meta, step: str, more_than: int, log) -> bool:
    """Whether a MIRI-only group-flagging step applies: a MIRI exposure with more than
    ``more_than`` groups (so enough remain for a slope); else log why it is skipped."""
    if not is_miri(meta):
        log.warning("%s applies to MIRI data only; step skipped", step)
        return False
    if int(meta.exposure.ngroups or 0) <= more_than:
        log.warning("too few groups (%s) for %s; step skipped", meta.exposure.ngroups, step)
        return False
    return True


def exposure_int(meta, block_index: int) -> int:
    """0-based index in the whole exposure of a block's integration (segmented files: INTSTART)."""
    start = meta.get("exposure.integration_start")
    return block_index + (int(start) - 1 if start else 0)


def or_into(pixeldq: np.ndarray, flags) -> None:
    """``pixeldq |= flags`` in place (flags a 2-D array or None)."""
    if flags is not None:
        np.bitwise_or(pixeldq, flags, out=pixeldq)

