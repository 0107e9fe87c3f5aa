"""refpix: remove bias drifts with the detector's reference pixels.

Near-IR detectors (NIRCam, NIRISS, NIRSpec, FGS) carry a 4-pixel border of reference pixels that
see no light but share the readout electronics. Per group, in the detector readout frame (fast
axis along columns, undone from the DMS orientation with FASTAXIS/SLOWAXIS):

1. Top/bottom rows: for each amplifier (4 x 512 columns) the clipped mean (``siglimit`` sigma,
   3 by default, as for every mean of this step) of the 4 bottom and the 4 top reference rows,
   separately for even and odd detector columns (``odd_even_columns``), DO_NOT_USE pixels
   excluded; the top and bottom means are averaged and subtracted from every pixel of the
   amplifier's columns of that parity.
2. Side columns (``use_side_ref_pixels``): the 4 left and 4 right reference columns, after step
   1, are reduced to one value per row by a running median over ``side_smoothing_length`` rows
   (edges reflected); left and right are averaged, scaled by ``side_gain`` and subtracted row by
   row.

Both corrections are accumulated as a per-column and a per-row vector and subtracted from the ramp
in one pass. A 4-output subarray is treated like full frame with only the reference pixels it
contains; a 1-output subarray uses one clipped mean per column parity over the pixels its PIXELDQ
flags REFERENCE_PIXEL (the step is SKIPPED when there are none). MIRI full frame: per group
(difference from the first group), per amplifier (every 4th column) the clipped means of the left
and right reference columns, separately for even and odd rows, averaged and subtracted; MIRI
subarrays are skipped, and MIRI is skipped altogether by default (``skip_miri``), as the reference
pipeline's parameter files configure it. ZEROFRAME is corrected like one more group.

NIRSpec IRS2 readouts (READPATT NRSIRS2, NRSIRS2RAPID: frames of 3200 x 2048) are corrected with
their interleaved reference pixels and reference output (:mod:`jwpipe.irs2`, the REFPIX
reference's alpha and beta); the step then strips those pixels, so the blocks it hands on have
2048 x 2048 frames (``preserve_irs2_refpix`` keeps them, as the reference pipeline does for
building bias files). With ``irs2_mean_subtraction`` the top/bottom correction of item 1 runs
first on the IRS2 frames, after the bad interleaved pixels are flagged and before they are
replaced, as in the reference pipeline: five outputs (the reference output too), odd and even
columns as the interleaved pixels' pairs go (:func:`jwpipe.irs2.odd_columns`), no side pixels.

``refpix_algorithm='sirs'`` replaces the running median of item 2, for full frames with a
SIRSKERNEL reference, by the convolution kernels of :mod:`jwpipe.steps._sirs` (Rauscher 2022);
without the reference, for subarrays or for a detector the reference lacks, the running median
stays, as in the reference pipeline.

Not implemented: multistripe/superstripe subarrays (every stage-1 step refuses them, naming
MSTR_RD1: :func:`jwpipe.pipelines.ramp_io.check_not_multistripe`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import dq as dqflags
from .._ext import _rowcol
from ..errors import ConfigError, DataShapeError
from ..irs2 import is_irs2, odd_columns
from ..logs import get_logger
from ._sirs import read_sirs_coefficients, sirs_kernels, subtract_sirs_templates
from .base import NOT_APPLICABLE, RampBlock, RampStep, StepParams, exposure_shape

__all__ = [
    "detector_view", "detector_origin", "clipped_mean",
    "running_side_median", "nir_reference_vectors", "dms_vectors",
    "apply_row_column_correction",
    "single_output_offsets", "miri_reference_offsets", "RefPixParams", "RefPixStep",
]

log = get_logger("refpix")

NIR_SIZE = 2048          # near-IR detector side, pixels
NIR_REF = 4              # width of the reference border
NIR_AMP_WIDTH = 512      # columns per output (4 outputs)
MIRI_ROWS, MIRI_COLS = 1024, 1032
# NIRSpec subarrays that reach no detector edge: their first/last 4 columns serve as references.
NRS_EDGELESS_SUBARRAYS = ("SUB512", "SUB512S", "SUB32")


# -- geometry --------------------------------------------------------------------------------------

def detector_view(array: np.ndarray, fastaxis: int, slowaxis: int) -> np.ndarray:
    """A view of ``array`` (..., ny, nx) in the detector readout frame (..., slow, fast).

    Parameters
    ----------
    array : ndarray of shape (..., ny, nx)
        Data in the DMS orientation.
    fastaxis, slowaxis : int
        FASTAXIS/SLOWAXIS keywords: +-1 is the FITS x axis, +-2 the y axis; the sign says whether
        the readout runs along or against it.

    Returns
    -------
    ndarray
        A view (no copy); writing into it writes into ``array``. The last axis runs along the
        fast (readout) direction, the second-last along the slow direction.
    """
    if abs(fastaxis) not in (1, 2) or abs(slowaxis) not in (1, 2) or abs(fastaxis) == abs(slowaxis):
        raise ConfigError(f"refpix: FASTAXIS={fastaxis}, SLOWAXIS={slowaxis} do not describe a "
                          "detector readout (expected +-1 and +-2)")
    view = array if abs(fastaxis) == 1 else np.swapaxes(array, -1, -2)
    if fastaxis < 0:
        view = view[..., ::-1]
    if slowaxis < 0:
        view = view[..., ::-1, :]
    return view


def detector_origin(xstart: int, ystart: int, xsize: int, ysize: int, fastaxis: int,
                    slowaxis: int, full: int = NIR_SIZE) -> tuple[int, int, int, int]:
    """Where a DMS subarray lies in the detector frame of a ``full`` x ``full`` detector.

    Parameters
    ----------
    xstart, ystart : int
        SUBSTRT1, SUBSTRT2 (1-based, DMS frame).
    xsize, ysize : int
        SUBSIZE1, SUBSIZE2.

    Returns
    -------
    (row0, col0, nrows, ncols) : tuple of int
        First detector row (slow axis) and column (fast axis) of :func:`detector_view` of the
        subarray, and its size in that frame.
    """
    x0, y0 = xstart - 1, ystart - 1
    if abs(fastaxis) == 1:
        fast0, fastn, slow0, slown = x0, xsize, y0, ysize
    else:
        fast0, fastn, slow0, slown = y0, ysize, x0, xsize
    col0 = full - (fast0 + fastn) if fastaxis < 0 else fast0
    row0 = full - (slow0 + slown) if slowaxis < 0 else slow0
    return row0, col0, slown, fastn


# -- statistics ------------------------------------------------------------------------------------

def clipped_mean(values: np.ndarray, low: float = 3.0, high: float = 3.0) -> np.ndarray:
    """Iteratively sigma-clipped mean along the last axis, NaN entries excluded.

    Each pass keeps the values within [mean - low*std, mean + high*std] of the values kept so
    far (population std) and stops when nothing more is rejected: ``scipy.stats.sigmaclip``
    followed by a mean, as the reference pipeline computes it, vectorised over leading axes.

    Parameters
    ----------
    values : ndarray of shape (..., n), float
        Samples; NaN marks samples to ignore (bad or absent pixels).
    low, high : float
        Clipping limits in standard deviations.

    Returns
    -------
    ndarray of shape (...), float64
        The clipped mean; NaN where a set has no valid sample.
    """
    x = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(x)
    xz = np.where(keep, x, 0.0)
    while True:
        n = keep.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(keep, xz, 0.0).sum(axis=-1) / n
            dev = np.where(keep, x - mean[..., None], 0.0)
            std = np.sqrt((dev * dev).sum(axis=-1) / n)
            lo = (mean - low * std)[..., None]
            hi = (mean + high * std)[..., None]
            new = keep & (x >= lo) & (x <= hi)
        if np.array_equal(new, keep):
            return mean
        keep = new


def running_side_median(side: np.ndarray, row0: int, smoothing_length: int,
                        full: int = NIR_SIZE, nthreads: int = 1) -> np.ndarray:
    """Running median of side reference columns over ``smoothing_length`` detector rows.

    Parameters
    ----------
    side : ndarray of shape (m, nrows, k), float
        The side reference columns of ``m`` images (``nrows`` detector rows starting at
        ``row0``, ``k`` <= 4 columns); NaN marks bad pixels.
    row0 : int
        Detector row of ``side[:, 0]``.
    smoothing_length : int
        Window height; an even value is increased by one.
    full : int
        Detector height: rows outside ``[row0, row0 + nrows)`` count as bad, and the window is
        reflected (without repeating the edge row) at detector rows 0 and ``full - 1``.
    nthreads : int
        Threads for the compiled median.

    Returns
    -------
    ndarray of shape (m, nrows), float32
        Median over the window's good pixels (all ``k`` columns); NaN where none is good.
    """
    if smoothing_length < 1:
        raise ConfigError(f"refpix: side_smoothing_length must be >= 1, got {smoothing_length}")
    if smoothing_length % 2 == 0:
        smoothing_length += 1
    half = smoothing_length // 2
    m, nrows, k = side.shape
    # The rows the windows need, on the detector grid, with reflection at the detector edges.
    det_rows = np.arange(row0 - half, row0 + nrows + half)
    det_rows = np.where(det_rows < 0, -det_rows, det_rows)
    det_rows = np.where(det_rows > full - 1, 2 * (full - 1) - det_rows, det_rows)
    local = det_rows - row0
    inside = (local >= 0) & (local < nrows)
    padded = np.full((m, det_rows.size, k), np.nan, dtype=np.float32)
    padded[:, inside] = side[:, local[inside]]
    out = np.empty((m, nrows), dtype=np.float32)
    _rowcol.window_median(padded, smoothing_length, out, nthreads)
    return out


# -- near-IR: amplifiers with top/bottom rows and side columns -------------------------------------

@dataclass
class NirGeometry:
    """Where the reference pixels of a near-IR (sub)array lie, in detector-frame local indices."""

    row0: int
    col0: int
    nrows: int
    ncols: int
    edges: list = field(default_factory=list)      # [(local row indices, name)] top/bottom
    sides: list = field(default_factory=list)      # [local column indices] left/right
    keys: np.ndarray | None = None                 # (ncols,) amplifier/parity key per column
    nkeys: int = 0

    @classmethod
    def build(cls, row0, col0, nrows, ncols, odd_even_columns: bool) -> "NirGeometry":
        geo = cls(row0, col0, nrows, ncols)
        rows = np.arange(row0, row0 + nrows)
        for name, want in (("bottom", (rows < NIR_REF)), ("top", (rows >= NIR_SIZE - NIR_REF))):
            local = np.nonzero(want)[0]
            if local.size:
                geo.edges.append((local, name))
        cols = np.arange(col0, col0 + ncols)
        for want in (cols < NIR_REF, cols >= NIR_SIZE - NIR_REF):
            local = np.nonzero(want)[0]
            if local.size:
                geo.sides.append(local)
        amp = np.clip(cols // NIR_AMP_WIDTH, 0, 3)
        geo.keys = amp * 2 + (cols % 2) if odd_even_columns else amp
        geo.nkeys = 8 if odd_even_columns else 4
        return geo

    @classmethod
    def irs2(cls, odd: np.ndarray, odd_even_columns: bool) -> "NirGeometry":
        """An IRS2 full frame in the detector frame (2048 rows by ``odd.size`` samples): top
        and bottom reference rows, no side columns, five outputs (the reference output first)
        whose columns are odd where ``odd`` (:func:`jwpipe.irs2.odd_columns`)."""
        ncols = odd.size
        geo = cls(0, 0, NIR_SIZE, ncols)
        rows = np.arange(NIR_SIZE)
        geo.edges = [(np.nonzero(rows < NIR_REF)[0], "bottom"),
                     (np.nonzero(rows >= NIR_SIZE - NIR_REF)[0], "top")]
        amp = np.arange(ncols) // (ncols // 5)
        geo.keys = amp * 2 + (~odd).astype(amp.dtype) if odd_even_columns else amp
        geo.nkeys = 10 if odd_even_columns else 5
        return geo


def _gather_by_key(rows: np.ndarray, good: np.ndarray, keys: np.ndarray, nkeys: int) -> np.ndarray:
    """Regroup reference pixels by amplifier/parity key.

    rows : (m, r, ncols) values; good : (r, ncols) bool; keys : (ncols,) ints.
    Returns (m, nkeys, nmax) float64 with NaN padding and NaN for bad pixels.
    """
    m, r, ncols = rows.shape
    key_grid = np.broadcast_to(keys, (r, ncols)).ravel()
    order = np.argsort(key_grid, kind="stable")
    counts = np.bincount(key_grid, minlength=nkeys)
    nmax = max(int(counts.max()), 1)
    slot = np.empty_like(order)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    slot[order] = np.arange(order.size) - np.repeat(starts, counts)
    out = np.full((m, nkeys, nmax), np.nan)
    vals = rows.reshape(m, -1).astype(np.float64)
    vals[:, ~good.ravel()] = np.nan
    out[:, key_grid, slot] = vals
    return out


def nir_reference_vectors(det: np.ndarray, det_dq: np.ndarray, geo: NirGeometry, *,
                          odd_even_columns: bool = True, use_side_ref_pixels: bool = True,
                          side_smoothing_length: int = 11, side_gain: float = 1.0,
                          siglimit: float = 3.0,
                          nthreads: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """Column and row corrections of near-IR images from their reference pixels.

    Parameters
    ----------
    det : ndarray of shape (m, nrows, ncols), float32
        Images (groups) in the detector frame (see :func:`detector_view`), covering detector rows
        ``geo.row0:geo.row0+nrows`` and columns ``geo.col0:geo.col0+ncols``.
    det_dq : ndarray of shape (nrows, ncols), uint32
        PIXELDQ in the same frame; DO_NOT_USE pixels are excluded.
    geo : NirGeometry
        Reference-pixel layout (:meth:`NirGeometry.build`).
    odd_even_columns, use_side_ref_pixels, side_smoothing_length, side_gain, siglimit
        As the step parameters.
    nthreads : int
        Threads for the compiled running median.

    Returns
    -------
    colcorr : ndarray of shape (m, ncols), float32
        Offset to subtract from every pixel of each column (amplifier/parity mean of the top and
        bottom rows; 0 for an amplifier lacking a valid mean).
    rowcorr : ndarray of shape (m, nrows), float32, or None
        ``side_gain`` x the side reference signal per row (None when not used or no side
        columns are present).
    """
    m = det.shape[0]
    good_dq = (det_dq & dqflags.DO_NOT_USE) == 0
    per_edge = []
    for local, _name in geo.edges:
        rows = det[:, local, :]
        good = good_dq[local, :] & np.ones(rows.shape[1:], bool)
        per_edge.append(clipped_mean(_gather_by_key(rows, good, geo.keys, geo.nkeys),
                                     siglimit, siglimit))
    colcorr = np.zeros((m, geo.ncols), dtype=np.float32)
    if per_edge:
        stack = np.stack(per_edge)                               # (nedge, m, nkeys)
        with np.errstate(invalid="ignore"):
            count = (~np.isnan(stack)).sum(axis=0)
            signal = np.where(count > 0, np.nansum(stack, axis=0) / np.maximum(count, 1),
                              np.nan)                            # (m, nkeys)
        if odd_even_columns:
            pairs = signal.reshape(m, geo.nkeys // 2, 2)
            missing = np.isnan(pairs).any(axis=2, keepdims=True)  # an amp needs both parities
            signal = np.where(missing, 0.0, pairs).reshape(m, geo.nkeys)
        signal = np.nan_to_num(signal, nan=0.0)
        colcorr[:] = signal[:, geo.keys]
    rowcorr = None
    if use_side_ref_pixels and geo.sides:
        medians = []
        for local in geo.sides:
            side = det[:, :, local].astype(np.float32) - colcorr[:, None, local]
            side[:, ~good_dq[:, local]] = np.nan
            medians.append(running_side_median(side, geo.row0, side_smoothing_length,
                                               nthreads=nthreads))
        stack = np.stack(medians)                                # (nside, m, nrows)
        count = (~np.isnan(stack)).sum(axis=0)
        combined = np.where(count > 0, np.nansum(stack, axis=0) / np.maximum(count, 1), 0.0)
        rowcorr = (np.float32(side_gain) * combined).astype(np.float32)
    return colcorr, rowcorr


def dms_vectors(colcorr: np.ndarray | None, rowcorr: np.ndarray | None, fastaxis: int,
                slowaxis: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Detector-frame column/row corrections -> per-DMS-row and per-DMS-column vectors.

    Parameters
    ----------
    colcorr : ndarray of shape (m, ncols) or None
        Correction per detector column (fast axis), as from :func:`nir_reference_vectors`.
    rowcorr : ndarray of shape (m, nrows) or None
        Correction per detector row (slow axis).
    fastaxis, slowaxis : int
        FASTAXIS, SLOWAXIS.

    Returns
    -------
    (yvec, xvec) : ndarrays of shape (m, ny) and (m, nx), float32, or None
        The same corrections indexed by DMS row and DMS column.
    """
    def orient(vec, sign):
        if vec is None:
            return None
        vec = vec[:, ::-1] if sign < 0 else vec
        return np.ascontiguousarray(vec, dtype=np.float32)

    fast, slow = orient(colcorr, fastaxis), orient(rowcorr, slowaxis)
    return (slow, fast) if abs(fastaxis) == 1 else (fast, slow)


def apply_row_column_correction(images: np.ndarray, yvec: np.ndarray | None,
                                xvec: np.ndarray | None, nthreads: int = 1) -> None:
    """Subtract ``yvec[y] + xvec[x]`` from every pixel, in place, in one pass.

    Parameters
    ----------
    images : ndarray of shape (m, ny, nx), float32, C-contiguous
        Images in the DMS orientation; modified in place.
    yvec : ndarray of shape (m, ny), float32, or None
    xvec : ndarray of shape (m, nx), float32, or None
    nthreads : int
        Threads for the compiled kernel.
    """
    if yvec is None and xvec is None:
        return
    _rowcol.subtract_outer(images, yvec, xvec, nthreads)


def irs2_top_bottom_correction(images: np.ndarray, pixeldq: np.ndarray, odd: np.ndarray,
                               fastaxis: int, slowaxis: int, *, odd_even_columns: bool = True,
                               siglimit: float = 3.0, nthreads: int = 1) -> None:
    """The top/bottom reference-row correction of IRS2 frames, in place (the refpix step's
    ``irs2_mean_subtraction``, run before the IRS2 correction itself).

    As for ordinary full frames, without side pixels: for each of the five outputs of the
    detector frame (the reference output first, then the four amplifiers, 640 samples each for
    the usual readout) the clipped means of its odd and even columns over the 4 bottom and the 4
    top rows, averaged, are subtracted from those columns, interleaved reference pixels
    included. Odd and even follow ``odd`` (the interleaved pixels come in pairs).

    Parameters
    ----------
    images : ndarray of shape (m, length, 2048), float32, C-contiguous
        IRS2 frames in the DMS orientation (``length`` 3200 for the usual readout); modified.
    pixeldq : ndarray of shape (length, 2048), uint32
        DO_NOT_USE pixels (bad interleaved rows flagged before) take no part in the means.
    odd : ndarray of bool, shape (length,)
        Odd columns of the detector frame (:func:`jwpipe.irs2.odd_columns`).
    fastaxis, slowaxis : int
        FASTAXIS, SLOWAXIS.
    odd_even_columns, siglimit
        As the step parameters.
    nthreads : int
        Threads for the compiled subtraction.
    """
    geo = NirGeometry.irs2(np.asarray(odd, bool), odd_even_columns)
    det = detector_view(images, fastaxis, slowaxis)
    if det.shape[1:] != (geo.nrows, geo.ncols):
        raise DataShapeError(f"refpix: IRS2 frames of {images.shape[1:]} do not fit "
                             f"FASTAXIS={fastaxis}, SLOWAXIS={slowaxis} and {geo.ncols} samples "
                             "along the readout direction")
    colcorr, _ = nir_reference_vectors(det, detector_view(pixeldq, fastaxis, slowaxis), geo,
                                       odd_even_columns=odd_even_columns,
                                       use_side_ref_pixels=False, siglimit=siglimit)
    yvec, xvec = dms_vectors(colcorr, None, fastaxis, slowaxis)
    apply_row_column_correction(images, yvec, xvec, nthreads)


# -- near-IR single output subarrays ---------------------------------------------------------------

def single_output_offsets(det: np.ndarray, ref_mask: np.ndarray, det_cols: np.ndarray,
                          odd_even_columns: bool = True, siglimit: float = 3.0) -> np.ndarray:
    """Per-column offsets of a one-output subarray from its flagged reference pixels.

    Parameters
    ----------
    det : ndarray of shape (m, nrows, ncols), float32
        Images in the detector frame.
    ref_mask : ndarray of shape (nrows, ncols), bool
        Usable reference pixels (REFERENCE_PIXEL set, DO_NOT_USE clear).
    det_cols : ndarray of shape (ncols,), int
        Full-frame detector column of each column (its parity selects the mean).
    odd_even_columns : bool
        Separate means for even and odd detector columns; else one mean.
    siglimit : float
        Sigma-clipping limit of the means.

    Returns
    -------
    ndarray of shape (m, ncols), float32
        The clipped mean to subtract from each column. A parity without reference pixels uses
        the mean over all of them.
    """
    m = det.shape[0]
    rr, cc = np.nonzero(ref_mask)
    values = det[:, rr, cc].astype(np.float64)                  # (m, nref)
    out = np.empty((m, det.shape[2]), dtype=np.float32)
    if not odd_even_columns:
        out[:] = clipped_mean(values, siglimit, siglimit)[:, None]
        return out
    parity_of_ref = det_cols[cc] % 2
    overall = None  # the mean over all reference pixels, only for a parity that has none
    for parity in (0, 1):
        sel = parity_of_ref == parity
        if sel.any():
            mean = clipped_mean(values[:, sel], siglimit, siglimit)
        else:
            overall = clipped_mean(values, siglimit, siglimit) if overall is None else overall
            mean = overall
        out[:, (det_cols % 2) == parity] = mean[:, None]
    return out


# -- MIRI ------------------------------------------------------------------------------------------

def miri_reference_offsets(diff_left: np.ndarray, diff_right: np.ndarray, dq_left: np.ndarray,
                           dq_right: np.ndarray, odd_even_rows: bool = True,
                           siglimit: float = 3.0) -> np.ndarray:
    """Per-amplifier (and row-parity) offsets of MIRI groups from the reference columns.

    Parameters
    ----------
    diff_left, diff_right : ndarray of shape (m, 1024, 4), float32
        Left (columns 0-3) and right (columns 1028-1031) reference columns of ``m`` groups minus
        the integration's first group; column ``a`` belongs to amplifier ``a``.
    dq_left, dq_right : ndarray of shape (1024, 4), uint32
        PIXELDQ of those columns (DO_NOT_USE excluded).
    odd_even_rows : bool
        Separate means for even and odd rows.
    siglimit : float
        Sigma-clipping limit of the means.

    Returns
    -------
    ndarray of shape (m, 2, 4), float64
        Offset for [group, row parity, amplifier] (both parities equal when not
        ``odd_even_rows``); NaN where a side has no valid pixel.
    """
    m = diff_left.shape[0]
    out = []
    for diff, dq in ((diff_left, dq_left), (diff_right, dq_right)):
        vals = diff.astype(np.float64)
        vals = np.where((dq & dqflags.DO_NOT_USE)[None] == 0, vals, np.nan)
        if odd_even_rows:
            means = np.stack([clipped_mean(np.moveaxis(vals[:, p::2, :], 1, 2), siglimit,
                                           siglimit) for p in (0, 1)], axis=1)  # (m, 2, 4)
        else:
            one = clipped_mean(np.moveaxis(vals, 1, 2), siglimit, siglimit)  # (m, 4)
            means = np.stack([one, one], axis=1)
        out.append(means)
    return 0.5 * (out[0] + out[1]).reshape(m, 2, 4)


# -- the step --------------------------------------------------------------------------------------

@dataclass
class RefPixParams(StepParams):
    odd_even_columns: bool = True
    use_side_ref_pixels: bool = True
    side_smoothing_length: int = 11
    side_gain: float = 1.0
    odd_even_rows: bool = True
    ovr_corr_mitigation_ftr: float = 3.0
    preserve_irs2_refpix: bool = False
    irs2_mean_subtraction: bool = False
    refpix_algorithm: str = "median"
    siglimit: float = 3.0           # sigma-clipping limit of every reference-pixel mean
    sigreject: float = 4.0
    gaussmooth: float = 1.0
    halfwidth: int = 30
    #: MIRI is not corrected unless this is False (the reference pipeline skips MIRI refpix
    #: through its CRDS parameter files).
    skip_miri: bool = True


@dataclass
class RefPixPlan:
    """What :meth:`RefPixStep.process_block` does for this exposure."""

    mode: str                       # "nir", "nir1", "miri", "irs2" or "skip"
    reason: str = ""
    fastaxis: int = -1
    slowaxis: int = 2
    geometry: Any = None            # (row0, col0, nrows, ncols) in the detector frame
    subarray_name: str = ""
    is_nirspec: bool = False
    cache: dict = field(default_factory=dict)    # DQ-derived layouts, filled on the first block
    status: str = "COMPLETE"
    irs2: Any = None                # IRS2: the Irs2Reference and the readout (see _prepare_irs2)
    sirs: Any = None                # SirsKernels when SIRS replaces the running median


class RefPixStep(RampStep):
    """Correct bias drifts with reference pixels (near-IR border, MIRI reference columns)."""

    name = "refpix"
    class_name = "RefPixStep"
    cal_step = "refpix"
    reference_types = ("refpix", "sirskernel")
    Params = RefPixParams

    def required_references(self) -> tuple[str, ...]:
        # Neither reference is needed by the default algorithm (IRS2 and SIRS need them).
        return ()

    def used_references(self, model) -> tuple[str, ...]:
        # SIRS needs its kernel and IRS2 readouts their refpix reference; an override is
        # recorded either way.
        needed = {"sirskernel": self.params.refpix_algorithm == "sirs",
                  "refpix": is_irs2(model.meta.get("exposure.readpatt"), exposure_shape(model))}
        return tuple(r for r in self.reference_types if needed[r] or r in self.overrides)

    def prepare(self, model, refs) -> RefPixPlan:
        p = self.params
        meta = model.meta
        if not p.siglimit > 0:
            raise ConfigError(f"step refpix: siglimit must be positive, got {p.siglimit!r}")
        if p.refpix_algorithm not in ("median", "sirs"):
            raise ConfigError(f"step refpix: refpix_algorithm must be 'median' or 'sirs', got "
                              f"{p.refpix_algorithm!r}")
        if p.refpix_algorithm == "sirs":
            if not (p.sigreject > 0 and p.gaussmooth > 0):
                raise ConfigError(f"step refpix: sigreject and gaussmooth must be positive, got "
                                  f"{p.sigreject!r} and {p.gaussmooth!r}")
            if int(p.halfwidth) != p.halfwidth or p.halfwidth < 1:
                raise ConfigError(f"step refpix: halfwidth must be a positive integer, got "
                                  f"{p.halfwidth!r}")
        shape = exposure_shape(model)
        readpatt = str(meta.get("exposure.readpatt") or "").upper()
        if is_irs2(readpatt, shape):
            return self._prepare_irs2(model, refs, shape, readpatt)
        detector = str(meta.get("instrument.detector") or "").upper()
        instrument = str(meta.get("instrument.name") or "").upper()
        sub = meta.subarray
        ny, nx = shape[-2:]
        xstart, ystart = sub.xstart or 1, sub.ystart or 1
        xsize, ysize = sub.xsize or nx, sub.ysize or ny
        if instrument == "MIRI" or detector.startswith("MIR"):
            if p.skip_miri:
                return RefPixPlan("skip", "MIRI reference-column correction is off (skip_miri)",
                                  status="SKIPPED")
            if (xstart, ystart, xsize, ysize) != (1, 1, MIRI_COLS, MIRI_ROWS) or \
                    (ny, nx) != (MIRI_ROWS, MIRI_COLS):
                return RefPixPlan("skip", "refpix is not applied to MIRI subarrays",
                                  status="SKIPPED")
            return RefPixPlan("miri")
        fastaxis, slowaxis = sub.fastaxis, sub.slowaxis
        if fastaxis is None or slowaxis is None:
            raise ConfigError(f"refpix: {model.path or 'input'} lacks FASTAXIS/SLOWAXIS "
                              "(meta.subarray.fastaxis/slowaxis), needed to find the readout frame")
        x0, y0 = xstart - 1, ystart - 1
        if x0 < 0 or y0 < 0 or x0 + xsize > NIR_SIZE or y0 + ysize > NIR_SIZE:
            return RefPixPlan("skip", "subarray does not fit in the 2048x2048 detector",
                              status="SKIPPED")
        is_sub = (xsize, ysize) != (NIR_SIZE, NIR_SIZE)
        geometry = detector_origin(xstart, ystart, xsize, ysize, fastaxis, slowaxis)
        noutputs = meta.get("exposure.noutputs")
        mode = "nir1" if is_sub and noutputs != 4 else "nir"
        plan = RefPixPlan(mode, fastaxis=fastaxis, slowaxis=slowaxis, geometry=geometry,
                          subarray_name=str(sub.name or "").upper(),
                          is_nirspec=detector.startswith("NRS"))
        if p.refpix_algorithm == "sirs":
            plan.sirs = self._prepare_sirs(model, refs, detector, plan.subarray_name,
                                           full=mode == "nir" and not is_sub)
        return plan

    def _prepare_sirs(self, model, refs, detector: str, subarray_name: str, full: bool):
        """The SIRS kernels for this exposure, or None where the running median stays (as in
        the reference pipeline: subarrays, no SIRSKERNEL reference, detector not in it)."""
        p = self.params
        if not p.use_side_ref_pixels:
            log.info("refpix: use_side_ref_pixels is off, so SIRS (a side-pixel algorithm) "
                     "is not applied")
            return None
        if not full or "FULL" not in subarray_name:
            log.info("refpix: SIRS is not applied to subarray data; the side reference pixels "
                     "are smoothed by the running median")
            return None
        path = refs.get("sirskernel")
        if path in (None, NOT_APPLICABLE):
            log.warning("refpix: no SIRSKERNEL reference for %s; the side reference pixels are "
                        "smoothed by the running median instead of SIRS",
                        model.path or "the input")
            return None
        coefficients = read_sirs_coefficients(path, detector)
        if coefficients is None:
            log.info("refpix: %s has no SIRS kernels for %s; the side reference pixels are "
                     "smoothed by the running median", path, detector)
            return None
        log.info("refpix: SIRS kernels for %s from %s", detector, path)
        return sirs_kernels(*coefficients, gaussmooth=p.gaussmooth, halfwidth=p.halfwidth,
                            name=str(path))

    def _prepare_irs2(self, model, refs, shape, readpatt) -> RefPixPlan:
        from ..irs2 import dms_row_mask, read_irs2_reference, readout_of

        p = self.params
        path = refs.get("refpix")
        if path in (None, NOT_APPLICABLE):
            raise ConfigError(f"refpix: {model.path or 'input'} is an IRS2 exposure "
                              f"(READPATT={readpatt or '?'}), which needs a REFPIX reference "
                              "file (none found; give one with --override refpix=FILE)")
        meta = model.meta
        detector = str(meta.get("instrument.detector") or "").upper()
        scipix_n, refpix_r = readout_of(meta)
        row_mask = dms_row_mask(detector, shape[-2], scipix_n, refpix_r)  # checks the layout
        if shape[-1] != row_mask.sum():
            raise DataShapeError(f"refpix: {model.path or 'input'} has IRS2 frames of "
                                 f"{shape[-2]}x{shape[-1]}; expected {shape[-2]}x"
                                 f"{int(row_mask.sum())} (rows along the readout direction)")
        log.info("IRS2 readout (NRS_NORM=%d, NRS_REF=%d) corrected with %s", scipix_n,
                 refpix_r, path)
        plan = RefPixPlan("irs2", irs2=dict(reference=read_irs2_reference(path),
                                            detector=detector, scipix_n=scipix_n,
                                            refpix_r=refpix_r, row_mask=row_mask))
        if p.irs2_mean_subtraction:
            plan.fastaxis, plan.slowaxis = meta.get("subarray.fastaxis"), meta.get(
                "subarray.slowaxis")
            if plan.fastaxis is None or plan.slowaxis is None:
                raise ConfigError(f"refpix: {model.path or 'input'} lacks FASTAXIS/SLOWAXIS "
                                  "(meta.subarray.fastaxis/slowaxis), needed by "
                                  "irs2_mean_subtraction to find the readout frame")
            detector_view(np.empty((2, 2)), plan.fastaxis, plan.slowaxis)   # checks them
            if p.use_side_ref_pixels:
                log.info("refpix: IRS2 mean subtraction uses no side reference pixels")
        return plan

    def _irs2_block(self, block: RampBlock, plan: RefPixPlan) -> None:
        from ..irs2 import correct_irs2, flag_bad_refpix, from_irs2

        p, irs2 = self.params, plan.irs2
        readout = dict(scipix_n=irs2["scipix_n"], refpix_r=irs2["refpix_r"])
        # Bad interleaved reference rows are flagged on the raw data, then (with
        # irs2_mean_subtraction) the top/bottom correction runs on the whole IRS2 frame, as the
        # reference pipeline does, and the flagged rows are replaced from their (corrected)
        # neighbours before the IRS2 correction itself.
        flagged = flag_bad_refpix(block.data, block.pixeldq, irs2["detector"], **readout,
                                  n_sigma=p.ovr_corr_mitigation_ftr)
        if p.irs2_mean_subtraction:
            self._irs2_mean_images(block.data, flagged, plan)
            if block.zeroframe is not None:
                zero = block.zeroframe == 0.0            # ZEROFRAME zeros mean "no value"
                self._irs2_mean_images(block.zeroframe[:, None], flagged, plan)
                block.zeroframe[zero] = 0.0
        data, pixeldq, groupdq = correct_irs2(
            block.data, flagged, block.groupdq, irs2["reference"], irs2["detector"], **readout,
            preserve_refpix=p.preserve_irs2_refpix, nthreads=self.threads, replace_flagged=True)
        # PIXELDQ is shared by the exposure's blocks and later steps add flags to it: the
        # stripped plane is kept here and handed on with every block.
        kept = plan.cache.get("pixeldq")
        if kept is None:
            kept = plan.cache["pixeldq"] = pixeldq
        else:
            np.bitwise_or(kept, pixeldq, out=kept)
        block.data, block.groupdq, block.pixeldq = data, groupdq, kept
        if block.zeroframe is not None and not p.preserve_irs2_refpix:
            block.zeroframe = np.ascontiguousarray(from_irs2(block.zeroframe,
                                                             irs2["row_mask"]))

    def _irs2_mean_images(self, data, pixeldq, plan) -> None:
        p = self.params
        odd = odd_columns(data.shape[-2], plan.irs2["scipix_n"], plan.irs2["refpix_r"])
        irs2_top_bottom_correction(_image_stack(data), pixeldq, odd, plan.fastaxis,
                                   plan.slowaxis, odd_even_columns=p.odd_even_columns,
                                   siglimit=p.siglimit, nthreads=self.threads)

    def process_block(self, block: RampBlock, plan: RefPixPlan) -> None:
        if plan.mode == "skip":
            return
        if plan.mode == "irs2":
            self._irs2_block(block, plan)
            return
        if plan.mode == "miri":
            self._miri_block(block, plan)
            return
        images = [block.data]
        if block.zeroframe is not None:
            images.append(block.zeroframe[:, None])
        for data in images:
            zero_mask = None
            if data is not block.data:
                zero_mask = data == 0.0              # ZEROFRAME zeros mean "no value"
            if plan.mode == "nir":
                self._nir_images(data, block.pixeldq, plan)
            else:
                self._nir1_images(data, block.pixeldq, plan)
            if zero_mask is not None:
                data[zero_mask] = 0.0

    # near-IR, full frame or 4 outputs
    def _nir_images(self, data, pixeldq, plan) -> None:
        p = self.params
        geo = plan.cache.get("geo")
        if geo is None:
            geo = plan.cache["geo"] = NirGeometry.build(*plan.geometry, p.odd_even_columns)
            plan.cache["dq"] = np.ascontiguousarray(
                detector_view(pixeldq, plan.fastaxis, plan.slowaxis))
        images = _image_stack(data)
        det = detector_view(images, plan.fastaxis, plan.slowaxis)
        colcorr, rowcorr = nir_reference_vectors(
            det, plan.cache["dq"], geo, odd_even_columns=p.odd_even_columns,
            use_side_ref_pixels=p.use_side_ref_pixels and plan.sirs is None,
            side_smoothing_length=p.side_smoothing_length, side_gain=p.side_gain,
            siglimit=p.siglimit, nthreads=self.threads)
        yvec, xvec = dms_vectors(colcorr, rowcorr, plan.fastaxis, plan.slowaxis)
        apply_row_column_correction(images, yvec, xvec, self.threads)
        if plan.sirs is not None:
            subtract_sirs_templates(det, plan.sirs, p.sigreject)

    # near-IR, one output
    def _nir1_images(self, data, pixeldq, plan) -> None:
        p = self.params
        if "ref_mask" not in plan.cache:
            dq_det = detector_view(pixeldq, plan.fastaxis, plan.slowaxis)
            refflag = (dq_det & dqflags.REFERENCE_PIXEL) != 0
            if plan.is_nirspec and plan.subarray_name in NRS_EDGELESS_SUBARRAYS:
                # These subarrays touch no edge: their first/last 4 DMS columns stand in.
                extra = np.zeros(pixeldq.shape, bool)
                extra[:, :NIR_REF] = True
                extra[:, -NIR_REF:] = True
                refflag = refflag | detector_view(extra, plan.fastaxis, plan.slowaxis)
            mask = refflag & ((dq_det & dqflags.DO_NOT_USE) == 0)
            plan.cache["ref_mask"] = mask
            row0, col0, nrows, ncols = plan.geometry
            plan.cache["det_cols"] = np.arange(col0, col0 + ncols)
            if not mask.any():
                plan.status = "SKIPPED"
                plan.reason = ("the one-output subarray has no usable reference pixels "
                               "(none flagged REFERENCE_PIXEL without DO_NOT_USE)")
        mask = plan.cache["ref_mask"]
        if not mask.any():
            return
        images = _image_stack(data)
        det = detector_view(images, plan.fastaxis, plan.slowaxis)
        offsets = single_output_offsets(det, mask, plan.cache["det_cols"], p.odd_even_columns,
                                        p.siglimit)
        yvec, xvec = dms_vectors(offsets, None, plan.fastaxis, plan.slowaxis)
        apply_row_column_correction(images, yvec, xvec, self.threads)

    # MIRI full frame
    def _miri_block(self, block, plan) -> None:
        p = self.params
        data = block.data
        nb, ng = data.shape[:2]
        if ng < 2:
            return
        dq = block.pixeldq
        left = data[:, :, :, 0:4]
        right = data[:, :, :, MIRI_COLS - 4:MIRI_COLS]
        dl = (left[:, 1:] - left[:, :1]).reshape(nb * (ng - 1), MIRI_ROWS, 4)
        dr = (right[:, 1:] - right[:, :1]).reshape(nb * (ng - 1), MIRI_ROWS, 4)
        offsets = miri_reference_offsets(dl, dr, dq[:, 0:4], dq[:, MIRI_COLS - 4:],
                                         p.odd_even_rows, p.siglimit).reshape(nb, ng - 1, 2, 4)
        bad = np.isnan(offsets).any(axis=(2, 3))
        if bad.any():
            log.warning("refpix: %d MIRI group(s) lack valid reference pixels for some amplifier; "
                        "those groups are not corrected", int(bad.sum()))
            offsets[bad] = 0.0
        # data[i, g, row parity p, amp a] -= offsets[i, g, p, a] (rows 2k+p, columns 4j+a)
        view = np.reshape(data[:, 1:], (nb, ng - 1, MIRI_ROWS // 2, 2, MIRI_COLS // 4, 4),
                          copy=False)
        view -= offsets[:, :, None, :, None, :].astype(np.float32)

    def release(self, plan: RefPixPlan) -> RefPixPlan:
        plan.cache.clear()  # per-exposure layouts (a full-frame DQ copy): finish needs none
        plan.irs2 = None    # the IRS2 reference's alpha and beta (47 MB)
        return plan

    def finish(self, model, plan: RefPixPlan) -> None:
        if plan.reason:
            log.info("refpix skipped: %s", plan.reason)
        self.record_status(model, plan.status)


def _image_stack(data: np.ndarray) -> np.ndarray:
    """(nb, ng, ny, nx) -> a (nb*ng, ny, nx) view of the same memory (never a copy)."""
    return np.reshape(data, (-1,) + data.shape[-2:], copy=False)
