"""linearity: correct the detector non-linearity with a per-pixel polynomial.

Each group value F becomes c0 + c1 F + c2 F^2 + ... (Horner's rule, float32, the reference
pipeline's operation order), except in groups flagged SATURATED, which keep their value. Pixels
whose coefficients contain NaN, whose linear term is 0, or that the reference flags NO_LIN_CORR
get identity coefficients (no correction) and NO_LIN_CORR in PIXELDQ; the reference DQ is ORed
into PIXELDQ. ZEROFRAME is corrected the same way (zero values stay zero).

For frame-averaged groups (NFRAMES > 1) and a reference with INV_COEFFS, the correction is done
frame by frame as in the reference pipeline: a first-pass count rate from the first and last
unsaturated groups predicts the individual frames, the inverse polynomial turns them back into
raw counts (offset so their mean matches the observed group), each frame is linearised and the
corrected frames are averaged. This removes the bias of linearising an average of frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dq
from .._ext import _saturation
from ..logs import get_logger
from ._stage1_refs import open_ref, or_into, ref_array, ref_dq
from .base import RampBlock, RampStep, StepParams

__all__ = ["prepare_coefficients", "apply_linearity", "apply_polynomial",
           "linearize_zeroframe", "linearity_frame_averaged", "LinearityStep"]

log = get_logger("step.linearity")


def prepare_coefficients(coeffs, lin_dq=None, *, copy: bool = True):
    """Make coefficients safe to apply everywhere and find the pixels they cannot correct.

    Parameters
    ----------
    coeffs : array_like of shape (ncoeffs, ny, nx)
        Polynomial coefficients, lowest order first.
    lin_dq : array_like of shape (ny, nx), optional
        Reference DQ in standard flags.
    copy : bool
        False: fix ``coeffs`` in place when it already is a C-contiguous float32 array (the
        caller's own copy, e.g. freshly read from the reference), saving a copy.

    Returns
    -------
    coeffs : ndarray of shape (ncoeffs, ny, nx), float32
        A C-contiguous copy (``coeffs`` itself when ``copy`` is False and it needs no
        conversion) in which pixels flagged NO_LIN_CORR, with any NaN coefficient or with a
        zero linear term have identity coefficients (0, 1, 0, ...).
    pixel_flags : ndarray of shape (ny, nx), uint32
        ``lin_dq`` plus NO_LIN_CORR for the NaN / zero-linear-term pixels (OR into PIXELDQ).
    """
    c = (np.array(coeffs, dtype=np.float32, copy=True, order="C") if copy
         else np.ascontiguousarray(coeffs, dtype=np.float32))
    if c.ndim != 3 or c.shape[0] < 2:
        raise ValueError(f"linearity coefficients must have shape (ncoeffs>=2, ny, nx), got "
                         f"{c.shape}")
    flags = (np.zeros(c.shape[1:], np.uint32) if lin_dq is None
             else np.array(lin_dq, dtype=np.uint32, copy=True))
    identity = np.zeros(c.shape[0], np.float32)
    identity[1] = 1.0
    # Pixels already flagged NO_LIN_CORR, with a NaN coefficient or a zero linear term get the
    # identity and the flag (flagged pixels have it already). One 2-D mask, built plane by plane.
    replace = (flags & dq.NO_LIN_CORR) != 0
    for plane in c:
        replace |= np.isnan(plane)
    replace |= c[1] == 0
    ys, xs = np.nonzero(replace)
    if ys.size:
        c[:, ys, xs] = identity[:, None]
        flags[ys, xs] |= np.uint32(dq.NO_LIN_CORR)
    return c, flags


def apply_polynomial(values, coeffs):
    """``c0 + c1 v + ... + c_{n-1} v^(n-1)`` by Horner's rule in the reference's order.

    ``values`` (..., ny, nx) and ``coeffs`` (ncoeffs, ny, nx); the result has the dtype numpy
    promotion gives (float32 for float32 inputs).
    """
    n = coeffs.shape[0]
    out = coeffs[n - 1] * values
    for j in range(n - 2, 0, -1):
        out += coeffs[j]
        out *= values
    out += coeffs[0]
    return out


def apply_linearity(data, groupdq, coeffs, *, zeroframe=None, nthreads: int = 1) -> None:
    """Linearise every unsaturated group in place.

    Parameters
    ----------
    data : ndarray of shape (nints, ngroups, ny, nx), float32, C-contiguous
        Updated in place.
    groupdq : ndarray of shape (nints, ngroups, ny, nx), uint8
        Groups with SATURATED keep their value.
    coeffs : ndarray of shape (ncoeffs, ny, nx), float32
        As returned by :func:`prepare_coefficients`.
    zeroframe : ndarray of shape (nints, ny, nx), float32, optional
        Corrected in place too; zero values stay zero.
    nthreads : int
        Threads for the compiled kernel.
    """
    if data.dtype != np.float32 or not data.flags.c_contiguous:
        raise ValueError("data must be a C-contiguous float32 array (corrected in place)")
    coeffs = np.ascontiguousarray(coeffs, dtype=np.float32)
    groupdq = np.ascontiguousarray(groupdq, dtype=np.uint8)
    _saturation.linearity_correct(data, groupdq, coeffs, np.uint8(dq.SATURATED), int(nthreads))
    if zeroframe is not None:
        linearize_zeroframe(zeroframe, coeffs)


def linearize_zeroframe(zeroframe, coeffs) -> None:
    """Apply the polynomial to a ZEROFRAME (nints, ny, nx) in place; zeros stay zero."""
    zero = zeroframe == 0.0
    corrected = apply_polynomial(zeroframe, coeffs)
    corrected[zero] = 0.0
    zeroframe[...] = corrected


def linearity_frame_averaged(data, groupdq, coeffs, inv_coeffs, nframes: int,
                             tile_rows: int = 64) -> None:
    """Frame-level linearity correction of one integration of averaged groups, in place.

    Parameters
    ----------
    data : ndarray of shape (ngroups, ny, nx), float32
        One integration; updated in place (saturated groups keep their value).
    groupdq : ndarray of shape (ngroups, ny, nx), uint8
    coeffs, inv_coeffs : ndarray of shape (ncoeffs, ny, nx), float32
        Forward and inverse polynomials, prepared by :func:`prepare_coefficients`.
    nframes : int
        Frames averaged per group; group g holds frames g*nframes+1 .. (g+1)*nframes.
    tile_rows : int
        Rows processed at a time (bounds the float64 working memory).
    """
    ngroups, ny, nx = data.shape
    sat = np.uint8(dq.SATURATED)
    if ngroups < 2:
        saturated = (groupdq & sat) != 0
        data[...] = np.where(saturated, data, apply_polynomial(data, coeffs))
        return
    frames = np.arange(1, ngroups * nframes + 1, dtype=np.float64).reshape(ngroups, nframes)
    mean_frame = frames.mean(axis=1)
    for r0 in range(0, ny, tile_rows):
        rows = slice(r0, min(ny, r0 + tile_rows))
        d = data[:, rows]
        q = groupdq[:, rows]
        c = coeffs[:, rows]
        ic = inv_coeffs[:, rows]
        saturated = (q & sat) != 0
        n_ok = (~saturated).sum(axis=0) - 1
        n_ok[n_ok < 2] = 2
        last = (n_ok - 1)[None]
        first_lin = np.where(saturated[0], d[0], apply_polynomial(d[0], c))
        last_d = np.take_along_axis(d, last, axis=0)[0]
        last_sat = np.take_along_axis(saturated, last, axis=0)[0]
        last_lin = np.where(last_sat, last_d, apply_polynomial(last_d, c))
        rate = (last_lin - first_lin) / (mean_frame[last[0]] - mean_frame[0])
        for g in range(ngroups):
            since = frames[g] - mean_frame[0]
            reads = first_lin[None] + rate[None] * since[:, None, None]
            raw = apply_polynomial(reads, ic)
            raw += (d[g] - raw.mean(axis=0))[None]
            corrected = np.stack([apply_polynomial(raw[k], c) for k in range(nframes)]).mean(0)
            d[g] = np.where(saturated[g], d[g], corrected)


@dataclass
class LinearityParams(StepParams):
    pass


@dataclass
class _LinState:
    coeffs: np.ndarray
    inv_coeffs: np.ndarray | None
    pixel_flags: np.ndarray
    nframes: int
    zero_frame: bool


class LinearityStep(RampStep):
    """Correct each group for the detector non-linearity (LINEARITY reference polynomials)."""

    name = "linearity"
    class_name = "LinearityStep"
    cal_step = "linearity"
    reference_types = ("linearity",)
    Params = LinearityParams

    def prepare(self, model, refs):
        path = refs["linearity"]
        ref = open_ref(path, "linearity")
        raw = ref_array(ref, "coeffs", model.meta, name=str(path))
        lin_dq = ref_dq(ref, model.meta, name=str(path))
        coeffs, flags = prepare_coefficients(raw, lin_dq, copy=False)  # raw: our own copy
        nframes = int(model.meta.exposure.nframes or 1)
        inverse = None
        if nframes > 1 and ref.has("inv_coeffs"):
            inv_raw = ref_array(ref, "inv_coeffs", model.meta, name=str(path))
            inverse, inv_flags = prepare_coefficients(inv_raw, lin_dq, copy=False)
            flags |= inv_flags
            log.info("frame-level linearity correction with inverse coefficients "
                     "(nframes %d)", nframes)
        return _LinState(coeffs, inverse, flags, nframes, bool(model.meta.exposure.zero_frame))

    def process_block(self, block: RampBlock, state: _LinState) -> None:
        zero = block.zeroframe if state.zero_frame else None
        if state.inv_coeffs is None:
            apply_linearity(block.data, block.groupdq, state.coeffs, zeroframe=zero,
                            nthreads=self.threads)
        else:
            for i in range(block.data.shape[0]):
                linearity_frame_averaged(block.data[i], block.groupdq[i], state.coeffs,
                                         state.inv_coeffs, state.nframes)
            if zero is not None:
                linearize_zeroframe(zero, state.coeffs)
        or_into(block.pixeldq, state.pixel_flags)

    def release(self, state: _LinState):
        return None  # finish needs nothing
