"""saturation: flag saturated and A/D-floor groups.

A group at or above the pixel's saturation threshold (raw DN, bias included: this step runs
before superbias) is SATURATED, and so is every later group of the integration; saturation grows
into the ``n_pix_grow_sat`` box around the pixel (charge spills into neighbours). A group at or
below zero is AD_FLOOR|DO_NOT_USE. Thresholds that are NaN or flagged NO_SAT_CHECK are set above
the 16-bit A/D limit and NO_SAT_CHECK goes into PIXELDQ. As in the reference pipeline, saturated
groups get SATURATED only (ramp fitting and jump detection skip SATURATED groups).

For grouped data (NFRAMES > 1, ``use_readpatt``) two more checks find saturation that frame
averaging hides: a group is DO_NOT_USE if it would be saturated against the threshold diluted by
the averaging (mean frame index / last frame index) and the next group is saturated; and group 2
is SATURATED when group 3 is, group 1 extrapolated to the end of group 3 would not saturate, and
the jump from group 1 to 2 exceeds (threshold - group 1)/NFRAMES, i.e. a saturating event
(bright cosmic ray) in a late frame of group 2. The superbias (if available) keeps the
extrapolation of group 1 from scaling the bias.

ZEROFRAME values that are saturated, at the A/D floor or next to a saturated value are set to 0.

NIRSpec IRS2 frames (3200 rows) with the usual 2048 x 2048 thresholds: the normal pixels are
taken out, flagged as above and put back; the reference output and interleaved reference pixels
are never flagged (as in the reference pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dq
from .._ext import _saturation
from ..irs2 import from_irs2, to_irs2
from ..logs import get_logger
from ._stage1_refs import NOT_APPLICABLE, irs2_rows, open_ref, or_into, ref_array, ref_dq, to_frames
from .base import RampBlock, RampStep, StepParams

__all__ = ["ATOD_LIMIT", "prepare_thresholds", "flag_saturation", "grow_mask",
           "SaturationStep"]

log = get_logger("step.saturation")

#: Hard DN limit of the 16-bit A/D converter.
ATOD_LIMIT = 65535.0


def prepare_thresholds(threshold, sat_dq=None):
    """Replace unusable thresholds and flag them NO_SAT_CHECK.

    Parameters
    ----------
    threshold : array_like of shape (ny, nx)
        Saturation thresholds in DN (NaN where unknown).
    sat_dq : array_like of shape (ny, nx), optional
        Reference DQ in standard flags.

    Returns
    -------
    threshold : ndarray of shape (ny, nx), float32
        A copy, with NaN and NO_SAT_CHECK pixels set to ATOD_LIMIT + 1.
    pixel_flags : ndarray of shape (ny, nx), uint32
        ``sat_dq`` with NO_SAT_CHECK added where the threshold was NaN (to OR into PIXELDQ).
    no_sat_check : ndarray of shape (ny, nx), bool
    """
    thr = np.array(threshold, dtype=np.float32, copy=True, order="C")
    flags = (np.zeros(thr.shape, np.uint32) if sat_dq is None
             else np.array(sat_dq, dtype=np.uint32, copy=True))
    nan = np.isnan(thr)
    flags[nan] |= np.uint32(dq.NO_SAT_CHECK)
    no_check = nan | ((flags & dq.NO_SAT_CHECK) != 0)
    thr[no_check] = ATOD_LIMIT + 1
    return thr, flags, no_check


def grow_mask(mask: np.ndarray, n: int) -> np.ndarray:
    """Binary dilation of a 2-D boolean mask by a (2n+1)x(2n+1) box (edges clipped)."""
    if n <= 0 or not mask.any():
        return mask.copy()
    rows = mask.copy()
    for k in range(1, n + 1):
        rows[:, k:] |= mask[:, :-k]
        rows[:, :-k] |= mask[:, k:]
    out = rows.copy()
    for k in range(1, n + 1):
        out[k:] |= rows[:-k]
        out[:-k] |= rows[k:]
    return out


def flag_saturation(data, groupdq, threshold, *, n_pix_grow_sat: int = 1, nframes: int = 1,
                    bias=None, no_sat_check=None, zeroframe=None, nthreads: int = 1):
    """Flag saturation and the A/D floor in place.

    Parameters
    ----------
    data : ndarray of shape (nints, ngroups, ny, nx), float32
        Raw ramps (bias included). Not modified.
    groupdq : ndarray of shape (nints, ngroups, ny, nx), uint8
        Updated in place: SATURATED from the first saturated group on (grown by
        ``n_pix_grow_sat``), AD_FLOOR|DO_NOT_USE at or below zero.
    threshold : ndarray of shape (ny, nx), float32
        Thresholds as returned by :func:`prepare_thresholds`.
    n_pix_grow_sat : int
        Half-size of the box saturation grows into.
    nframes : int
        Frames averaged per group; > 1 enables the read-pattern checks (``use_readpatt``).
    bias : ndarray of shape (ny, nx), float32, optional
        Superbias, used by the group-2 check (0 if absent).
    no_sat_check : ndarray of shape (ny, nx), bool, optional
        Pixels without a saturation check (their threshold is never diluted).
    zeroframe : ndarray of shape (nints, ny, nx), float32, optional
        Saturated/floor values (and their grown neighbours) are set to 0 in place.
    nthreads : int
        Threads for the compiled kernel.

    Returns
    -------
    first_sat : ndarray of shape (nints, ny, nx), int16
        First saturated group per pixel after growth (ngroups where none).
    """
    data = np.ascontiguousarray(data, dtype=np.float32)
    threshold = np.ascontiguousarray(threshold, dtype=np.float32)
    if groupdq.dtype != np.uint8 or not groupdq.flags.c_contiguous:
        raise ValueError("groupdq must be a C-contiguous uint8 array (updated in place)")
    if data.ndim != 4 or groupdq.shape != data.shape:
        raise ValueError(f"data and groupdq must be 4-D of one shape, got {data.shape} and "
                         f"{groupdq.shape}")
    nints, ngroups, ny, nx = data.shape
    first = np.empty((nints, ny, nx), np.int16)
    _saturation.flag_saturation(data, threshold, groupdq, first, int(n_pix_grow_sat),
                                int(nthreads), np.uint8(dq.SATURATED),
                                np.uint8(dq.AD_FLOOR | dq.DO_NOT_USE))
    if nframes > 1:
        _flag_grouped(data, groupdq, threshold, n_pix_grow_sat, nframes, bias, no_sat_check)
    if zeroframe is not None:
        _flag_zeroframe(zeroframe, threshold, n_pix_grow_sat)
    return first


def _flag_grouped(data, groupdq, threshold, grow, nframes, bias, no_sat_check):
    """The read-pattern checks for frame-averaged groups (see the module docstring).

    Both checks can only fire next to a group already flagged SATURATED, so they are evaluated
    on those pixels alone (usually a tiny fraction of the frame).
    """
    nints, ngroups = data.shape[:2]
    sat, dnu = np.uint8(dq.SATURATED), np.uint8(dq.DO_NOT_USE)
    # Frames of group g are g*nframes+1 .. (g+1)*nframes (the reference's read pattern).
    dilution = [(g * nframes + (nframes + 1) / 2.0) / ((g + 1) * nframes) for g in range(ngroups)]
    mean0, last2 = np.float32((nframes + 1) / 2.0), np.float32(3 * nframes)
    for i in range(nints):
        gdq = groupdq[i]
        if ngroups < 2:
            continue
        # Only pixels saturated in some group after the first can satisfy either check: find
        # them once (row-major, like np.nonzero of a whole frame) and test only those below.
        cy, cx = np.nonzero(np.bitwise_or.reduce(gdq[1:], axis=0) & sat)
        if cy.size == 0:
            continue
        # Work backwards: a group whose value crosses the diluted threshold while the next group
        # saturated probably saturated part way through.
        for g in range(ngroups - 2, -1, -1):
            if dilution[g] == 1.0:
                continue
            sel = ((gdq[g + 1][cy, cx] & sat) != 0) & ((gdq[g][cy, cx] & (sat | dnu)) == 0)
            ys, xs = cy[sel], cx[sel]
            if ys.size == 0:
                continue
            limit = threshold[ys, xs].astype(np.float64)
            if no_sat_check is None:
                limit *= dilution[g]
            else:
                limit = np.where(no_sat_check[ys, xs], limit, limit * dilution[g])
            hit = data[i, g, ys, xs] >= limit
            if hit.any():
                partial = np.zeros(gdq.shape[1:], bool)
                partial[ys[hit], xs[hit]] = True
                gdq[g][grow_mask(partial, grow)] |= dnu
        # Group 2 saturating during its late frames: group 3 saturated, group 1 extrapolated to
        # the end of group 3 unsaturated, and a jump from group 1 to 2 larger than the headroom
        # left by group 1 divided among the frames of group 2.
        if ngroups > 2:
            sel = (gdq[2][cy, cx] & sat) != 0
            ys, xs = cy[sel], cx[sel]
            if ys.size == 0:
                continue
            g1, g2, g3 = (data[i, k, ys, xs] for k in range(3))
            thr = threshold[ys, xs]
            b = np.float32(0.0) if bias is None else np.asarray(bias, np.float32)[ys, xs]
            hit = ((g1 - b) / mean0) * last2 + b < thr
            hit &= (g2 - g1) > (thr - g1) / np.float32(nframes)
            hit &= g3 >= thr
            if hit.any():
                mask = np.zeros(gdq.shape[1:], bool)
                mask[ys[hit], xs[hit]] = True
                gdq[1][grow_mask(mask, grow)] |= sat


def _flag_zeroframe(zeroframe, threshold, grow):
    for i in range(zeroframe.shape[0]):
        plane = zeroframe[i]
        saturated = plane >= threshold
        bad = grow_mask(saturated, grow) | (plane <= 0)
        plane[bad] = 0.0


@dataclass
class SaturationParams(StepParams):
    #: Layers of neighbours of a saturated pixel also flagged (charge spilling).
    n_pix_grow_sat: int = 1
    #: Use the read pattern of frame-averaged groups to find saturation part way through a group.
    use_readpatt: bool = True


@dataclass
class _SatState:
    threshold: np.ndarray
    pixel_flags: np.ndarray
    no_sat_check: np.ndarray
    bias: np.ndarray | None
    nframes: int
    zero_frame: bool
    irs2_rows: np.ndarray | None = None  # IRS2 frames: the rows of their normal pixels


class SaturationStep(RampStep):
    """Flag saturated (and A/D-floor) groups from the SATURATION reference thresholds."""

    name = "saturation"
    class_name = "SaturationStep"
    cal_step = "saturation"
    reference_types = ("saturation", "superbias")
    Params = SaturationParams

    def required_references(self):
        return ("saturation",)

    def prepare(self, model, refs):
        path = refs["saturation"]
        ref = open_ref(path, "saturation")
        thr = ref_array(ref, "data", model.meta, name=str(path))
        sat_dq = ref_dq(ref, model.meta, name=str(path))
        threshold, flags, no_check = prepare_thresholds(thr, sat_dq)
        rows = irs2_rows(model)
        if rows is not None and threshold.shape[-2] == rows.size:
            rows = None  # thresholds in IRS2 layout: the frames are flagged as they are
        flags = to_frames(flags, rows, fill=0, name=str(path))  # into PIXELDQ as it is laid out
        nframes = int(model.meta.exposure.nframes or 1)
        bias = None
        if self.params.use_readpatt and nframes > 1 and refs.get("superbias") not in (
                None, NOT_APPLICABLE):
            bpath = refs["superbias"]
            bias = ref_array(open_ref(bpath, "superbias"), "data", model.meta, name=str(bpath))
            if rows is not None and bias.shape[-2] == rows.size:
                bias = np.ascontiguousarray(from_irs2(bias, rows))
        if self.params.use_readpatt:
            log.info("using the read pattern with nframes %d", nframes)
        return _SatState(threshold, flags, no_check, bias,
                         nframes if self.params.use_readpatt else 1,
                         bool(model.meta.exposure.zero_frame), rows)

    def process_block(self, block: RampBlock, state: _SatState) -> None:
        # IRS2 frames with normal-layout thresholds: the normal pixels are taken out and flagged
        # as a 2048 x 2048 exposure would be (saturation grows between pixels that are
        # neighbours on the detector, across the interleaved reference pixels), and their flags
        # put back; the reference pixels are never flagged (as in the reference pipeline).
        rows = state.irs2_rows
        zero = block.zeroframe if state.zero_frame else None
        data, groupdq = block.data, block.groupdq
        if rows is not None:
            data, groupdq = (np.ascontiguousarray(from_irs2(a, rows)) for a in (data, groupdq))
            if zero is not None:
                zero = np.ascontiguousarray(from_irs2(zero, rows))
        flag_saturation(data, groupdq, state.threshold,
                        n_pix_grow_sat=self.params.n_pix_grow_sat, nframes=state.nframes,
                        bias=state.bias, no_sat_check=state.no_sat_check, zeroframe=zero,
                        nthreads=self.threads)
        if rows is not None:
            to_irs2(block.groupdq, groupdq, rows)
            if zero is not None:
                to_irs2(block.zeroframe, zero, rows)
        or_into(block.pixeldq, state.pixel_flags)

    def release(self, state: _SatState):
        return None  # finish needs nothing
