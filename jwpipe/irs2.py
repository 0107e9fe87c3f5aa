"""NIRSpec IRS2 readout: the layout of its frames.

In IRS2 ("improved reference sampling and subtraction", Rauscher et al. 2017) each of the four
amplifiers reads ``scipix_n`` normal pixels, then ``refpix_r`` interleaved reference pixels, and
so on along its 512 columns, while a fifth output (the reference output) is read alongside. A raw
full frame is therefore five sections of ``512 + 512 // scipix_n * refpix_r`` samples along the
readout direction (3200 for the usual 16 and 4) by 2048, the reference output first in detector
orientation. In DMS (science) orientation the readout direction is the row axis: frames are
(3200, 2048), the reference output in the first 640 rows for NRS1 and the last 640 for NRS2.

Everything up to the reference-pixel correction works on such frames; the correction removes the
reference output and the interleaved pixels, so the steps after it see (2048, 2048) frames.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import NamedTuple

import numpy as np
from astropy.stats import sigma_clipped_stats

from . import dq as _dq
from .errors import DataShapeError, ReferenceFileError

__all__ = ["IRS2_READPATTS", "NORMAL_SIZE", "is_irs2", "readout_of", "irs2_length",
           "normal_pixel_mask", "odd_columns", "dms_row_mask", "from_irs2", "to_irs2"]

#: READPATT values of IRS2 exposures.
IRS2_READPATTS = ("NRSIRS2", "NRSIRS2RAPID")

#: Normal pixels along each axis of a full frame.
NORMAL_SIZE = 2048

_AMP_PIXELS = 512  # normal pixels per amplifier along the readout direction


def is_irs2(readpatt, frame_shape) -> bool:
    """Whether an exposure is in IRS2 layout: an IRS2 READPATT, or a frame axis over 2048.

    Parameters
    ----------
    readpatt : str or None
        The READPATT keyword.
    frame_shape : tuple of int
        The data shape; only its last two axes are used.
    """
    rp = str(readpatt or "").strip().upper()
    return rp in IRS2_READPATTS or (len(frame_shape) >= 2 and max(frame_shape[-2:]) > NORMAL_SIZE)


def readout_of(meta) -> tuple[int, int]:
    """``(scipix_n, refpix_r)`` of an exposure: its NRS_NORM and NRS_REF keywords, 16 and 4 when
    absent (the values every IRS2 readout uses in practice)."""
    return (int(meta.get("exposure.nrs_normal") or 16),
            int(meta.get("exposure.nrs_reference") or 4))


def irs2_length(scipix_n: int = 16, refpix_r: int = 4) -> int:
    """Samples along the readout direction of an IRS2 frame: five sections (the reference output
    and four amplifiers) of 512 normal plus ``512 // scipix_n * refpix_r`` reference samples."""
    return 5 * (_AMP_PIXELS + _AMP_PIXELS // scipix_n * refpix_r)


def normal_pixel_mask(length: int = 3200, scipix_n: int = 16, refpix_r: int = 4) -> np.ndarray:
    """Which samples along the readout direction (detector orientation) are normal pixels.

    Parameters
    ----------
    length : int
        Samples along the readout direction (3200 for the usual readout).
    scipix_n, refpix_r : int
        Normal pixels read before stepping out to the reference pixels (NRS_NORM), and
        reference pixels read before stepping back (NRS_REF).

    Returns
    -------
    ndarray of bool, shape (length,)
        True for a normal pixel; False for the reference output (the first fifth) and the
        interleaved reference pixels.

    Raises
    ------
    DataShapeError
        ``length`` is not that of an IRS2 frame with these NRS_NORM and NRS_REF, or they do not
        leave 2048 normal pixels.
    """
    if scipix_n <= 0 or refpix_r <= 0 or scipix_n % 2 or _AMP_PIXELS % scipix_n:
        raise DataShapeError(f"IRS2 readout with NRS_NORM={scipix_n}, NRS_REF={refpix_r}: "
                             "NRS_NORM must be an even divisor of 512 and NRS_REF positive")
    if length != irs2_length(scipix_n, refpix_r):
        raise DataShapeError(
            f"IRS2 frames of {length} samples along the readout direction do not match "
            f"NRS_NORM={scipix_n}, NRS_REF={refpix_r} (which give "
            f"{irs2_length(scipix_n, refpix_r)})")
    section = length // 5
    # In each amplifier's section: scipix_n // 2 normal pixels, then refpix_r reference and
    # scipix_n normal alternately; the sections read in opposite directions look alike because
    # the pattern ends with scipix_n // 2 normal pixels too.
    one = np.ones(section, dtype=bool)
    for start in range(scipix_n // 2, section, scipix_n + refpix_r):
        one[start:start + refpix_r] = False
    mask = np.concatenate([np.zeros(section, dtype=bool)] + [one] * 4)
    if int(mask.sum()) != NORMAL_SIZE:
        raise DataShapeError(f"IRS2 readout with NRS_NORM={scipix_n}, NRS_REF={refpix_r} leaves "
                             f"{int(mask.sum())} normal pixels, not {NORMAL_SIZE}")
    return mask


def odd_columns(length: int = 3200, scipix_n: int = 16, refpix_r: int = 4) -> np.ndarray:
    """Which samples along the readout direction (detector orientation) count as odd columns
    for the top/bottom reference-pixel means (the refpix step's ``irs2_mean_subtraction``).

    Normal pixels alternate odd, even from the first sample (index 0 is odd, as column 1 of an
    ordinary frame). Interleaved reference pixels are read in two pairs, the first odd and the
    second even: a sample at index ``i`` is odd when ``i % 4 < 2``. The reference output's
    section has the amplifiers' pattern. This is jwst's ``make_irs2_odd_mask``.

    Parameters
    ----------
    length, scipix_n, refpix_r : int
        As :func:`normal_pixel_mask`.

    Returns
    -------
    ndarray of bool, shape (length,)
        True for odd columns.
    """
    interleaved = ~normal_pixel_mask(length, scipix_n, refpix_r)
    section = length // 5
    interleaved[:section] = interleaved[section:2 * section]
    index = np.arange(length)
    odd = index % 2 == 0
    odd[interleaved] = index[interleaved] % 4 < 2
    return odd


def dms_row_mask(detector: str, length: int = 3200, scipix_n: int = 16,
                 refpix_r: int = 4) -> np.ndarray:
    """:func:`normal_pixel_mask` along the rows of DMS-oriented frames (..., length, 2048).

    NRS1 frames are the detector frames transposed; NRS2 frames are also turned by 180 degrees,
    so their mask is reversed.

    Raises
    ------
    DataShapeError
        ``detector`` is not NRS1 or NRS2 (only NIRSpec reads out in IRS2).
    """
    mask = normal_pixel_mask(length, scipix_n, refpix_r)
    return mask if _detector_name(detector) == "NRS1" else mask[::-1].copy()


def from_irs2(frames: np.ndarray, row_mask: np.ndarray) -> np.ndarray:
    """The normal pixels of DMS-oriented IRS2 frames.

    Parameters
    ----------
    frames : ndarray, shape (..., length, nx)
    row_mask : ndarray of bool, shape (length,)
        From :func:`dms_row_mask`.

    Returns
    -------
    ndarray, shape (..., 2048, nx)
        A copy (fancy indexing).
    """
    return frames[..., row_mask, :]


def to_irs2(frames: np.ndarray, normal: np.ndarray, row_mask: np.ndarray) -> None:
    """Put normal-pixel frames back into IRS2 frames, in place (the inverse of from_irs2)."""
    frames[..., row_mask, :] = normal


# == The IRS2 reference-pixel correction (Rauscher et al. 2017) ===================================
#
# The correction works on time-ordered series. In detector orientation an IRS2 frame is
# (2048, 3200): 2048 rows, each read as five 640-sample sections in parallel (the reference output
# and four amplifiers; sections 0, 2 and 4 are read right to left). Within a section, the
# amplifier reads ``scipix_n // 2`` normal pixels, then alternately ``refpix_r`` interleaved
# reference pixels and ``scipix_n`` normal pixels; stepping out to and back from the reference
# pixels costs one sample time each, and every row ends with ``_PAD`` idle sample times. Placing
# each sample at its read time gives ``row`` (712) time slots per detector row, so one frame of
# one section is a series of 2048 * 712 samples, with zeros in the idle slots.
#
# Per group, and per amplifier k, the correction subtracted from the normal pixels is
#
#     IFFT( beta_k * FFT(interleaved reference series) + alpha_k * FFT(reference output series) )
#
# where alpha_k and beta_k are the reference file's columns of those names (the IDL original
# names the two weights the other way round; jwst, like this code, weights the reference
# output's spectrum by the alpha columns). The
# reference output series is first gap-filled (cosine-weighted interpolation, then three rounds
# of Fourier low-pass filtering that keep its normal-pixel slots); every series has a straight
# line in time, fitted to the detector's top and bottom four rows, removed; and the mean of each
# pixel over the ramp is taken out first and put back at the end.
#
# Both series are real, so the transforms are real FFTs (half the work and memory of the complex
# ones); the real part of the complex product equals the inverse real FFT with the weights made
# Hermitian, ``(w[f] + conj(w[-f])) / 2``.

__all__ += ["Irs2Reference", "Irs2Result", "read_irs2_reference", "flag_bad_refpix",
            "replace_bad_refpix", "correct_irs2", "irs2_subtract_reference"]

_PAD = 8  # idle sample times at the end of each row (the new-row overhead)
_FIT_ROWS = np.array([0, 1, 2, 3, 2044, 2045, 2046, 2047])  # detector rows of the slope fits
_FILL_ITERATIONS = 3  # rounds of Fourier filtering of the reference output's gaps
_COSINE_TAPS = np.sin(np.arange(1, 32, dtype=np.float32) / np.float32(32.0) * np.float32(np.pi))
_REF_COLUMNS = ("alpha_0", "alpha_1", "alpha_2", "alpha_3", "beta_0", "beta_1", "beta_2", "beta_3")


def _series_length(scipix_n: int = 16, refpix_r: int = 4) -> int:
    """Time slots per detector row: (normal + reference + 2 jump overheads) per block, + pad."""
    return (scipix_n + refpix_r + 2) * (_AMP_PIXELS // scipix_n) + _PAD


@dataclass(frozen=True, eq=False)
class Irs2Reference:
    """An IRS2 (REFPIX) reference file: the Fourier weights and the bad interleaved pixels.

    Attributes
    ----------
    alpha, beta : ndarray of shape (4, 712 * 2048), complex64
        The ``alpha_k`` and ``beta_k`` columns (k = amplifier 1..4 less one), read as complex
        numbers from their interleaved real and imaginary parts. The correction weights the
        spectrum of the reference output by ``alpha`` and that of the interleaved reference
        pixels by ``beta``.
    output, odd_even : ndarray of shape (nrows,), uint16
        DQ table: the amplifier (1-4) and which pair (1 or 2) of each group of interleaved
        reference pixels a row describes. Empty when the file has no DQ extension.
    mask : ndarray of shape (nrows,), uint32
        DQ table: bit k set means the pair in the k-th group of interleaved reference pixels,
        counted along the detector row, is bad.
    name : str
        The file, for messages.
    """

    alpha: np.ndarray
    beta: np.ndarray
    output: np.ndarray
    odd_even: np.ndarray
    mask: np.ndarray
    name: str = "IRS2 reference"

    @cached_property
    def half_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``(alpha, beta)`` for real FFTs: ``(w[f] + conj(w[-f])) / 2`` for f = 0..n/2,
        arrays of shape (4, n // 2 + 1), complex64."""
        n = self.alpha.shape[-1]
        mirror = (-np.arange(n // 2 + 1)) % n

        def hermitian(w):
            half = (w[:, :n // 2 + 1] + np.conj(w[:, mirror])) / np.float32(2)
            return half.astype(np.complex64)
        return hermitian(self.alpha), hermitian(self.beta)


class Irs2Result(NamedTuple):
    """The corrected exposure: data (nints, ngroups, 2048, 2048) float32, pixeldq (2048, 2048)
    uint32, groupdq (nints, ngroups, 2048, 2048) uint8; with ``preserve_refpix`` the row axis
    keeps its IRS2 length."""

    data: np.ndarray
    pixeldq: np.ndarray
    groupdq: np.ndarray


def read_irs2_reference(path) -> Irs2Reference:
    """Read an IRS2 REFPIX reference file.

    Parameters
    ----------
    path : str or Path
        A FITS file with a binary table extension IRS2 (float32 columns alpha_0..alpha_3,
        beta_0..beta_3 of ``2 * 712 * 2048`` rows: real and imaginary parts alternately) and,
        optionally, a binary table extension DQ (columns OUTPUT, ODD_EVEN, MASK).

    Returns
    -------
    Irs2Reference

    Raises
    ------
    ReferenceFileError
        The file cannot be read, or lacks the IRS2 extension or one of its columns, or a column
        has the wrong number of rows, or a DQ extension lacks a column. (The jwst pipeline logs
        the wrong row count and skips the step; here it is an error.)
    """
    from .datamodels.fits_io import open_hdulist
    from .errors import InputFileError

    try:
        hdul = open_hdulist(path)
    except InputFileError as exc:
        raise ReferenceFileError(str(exc)) from exc
    with hdul:
        table = _table(hdul, "IRS2", path, required=True)
        nrows = 2 * _series_length() * NORMAL_SIZE
        columns = {name: _column(table, name, path, "IRS2") for name in _REF_COLUMNS}
        weights = {}
        for name, column in columns.items():
            if column.shape != (nrows,):
                raise ReferenceFileError(
                    f"{path}: extension IRS2 column {name} has {column.shape[0]} rows, but "
                    f"{nrows} (2 * 712 * 2048 interleaved real and imaginary parts) are needed")
            values = column.astype(np.float32)
            weights[name] = (values[0::2] + 1j * values[1::2]).astype(np.complex64)
        alpha = np.stack([weights[f"alpha_{k}"] for k in range(4)])
        beta = np.stack([weights[f"beta_{k}"] for k in range(4)])

        dq_table = _table(hdul, "DQ", path, required=False)
        if dq_table is None or len(dq_table) == 0:
            output = odd_even = np.zeros(0, np.uint16)
            mask = np.zeros(0, np.uint32)
        else:
            output = _column(dq_table, "OUTPUT", path, "DQ").astype(np.int64)
            odd_even = _column(dq_table, "ODD_EVEN", path, "DQ").astype(np.int64)
            mask = _column(dq_table, "MASK", path, "DQ").astype(np.int64)
            if np.any((output < 1) | (output > 4)):
                raise ReferenceFileError(f"{path}: extension DQ column OUTPUT must hold "
                                         "amplifier numbers 1-4")
            if np.any((odd_even != 1) & (odd_even != 2)):
                raise ReferenceFileError(f"{path}: extension DQ column ODD_EVEN must hold 1 or 2")
            if np.any((mask < 0) | (mask >= 2**32)):
                raise ReferenceFileError(f"{path}: extension DQ column MASK must be uint32")
            output = output.astype(np.uint16)
            odd_even = odd_even.astype(np.uint16)
            mask = mask.astype(np.uint32)
    return Irs2Reference(alpha, beta, output, odd_even, mask, name=str(path))


def _table(hdul, extname: str, path, required: bool):
    """The data of binary table extension ``extname`` (None when absent and not required)."""
    from astropy.io import fits

    for hdu in hdul[1:]:
        if str(hdu.header.get("EXTNAME", "")).strip().upper() == extname:
            if not isinstance(hdu, fits.BinTableHDU):
                raise ReferenceFileError(f"{path}: extension {extname} is not a binary table")
            return hdu.data if hdu.data is not None else np.zeros(0)
    if required:
        raise ReferenceFileError(f"{path}: IRS2 reference file has no extension {extname} "
                                 "(a binary table of the Fourier weights alpha_k, beta_k)")
    return None


def _column(table, name: str, path, extname: str) -> np.ndarray:
    names = {n.lower(): n for n in (table.columns.names if hasattr(table, "columns") else [])}
    if name.lower() not in names:
        raise ReferenceFileError(f"{path}: extension {extname} has no column {name}")
    return np.asarray(table[names[name.lower()]])


# -- layout of the time-ordered series ----------------------------------------------------------

@dataclass(frozen=True)
class _Layout:
    """Where each sample of a 640-sample section goes in a row of the time-ordered series.

    Positions count along a section in its readout direction (``pos``); slots count along a
    row of the series (``slot``). All arrays are int64.
    """

    scipix_n: int
    refpix_r: int
    section: int  # samples per section along the readout direction (640)
    row: int  # time slots per detector row (712)
    normal_pos: np.ndarray  # (512,)
    normal_slot: np.ndarray  # (512,)
    ref_pos: np.ndarray  # (512 // scipix_n * refpix_r,)
    ref_slot: np.ndarray
    window_slot: np.ndarray  # slots of the interleaved-reference series that carry values
    window_source: np.ndarray  # the reference slot whose value each of those slots carries
    sample_slot: np.ndarray  # (section,): the slot of each position, in position order

    @property
    def series(self) -> int:
        return self.row * NORMAL_SIZE


@lru_cache(maxsize=8)
def _layout(scipix_n: int, refpix_r: int) -> _Layout:
    n, r = scipix_n, refpix_r
    if r <= 0 or r % 2 or r > n:
        raise DataShapeError(f"IRS2 correction with NRS_NORM={n}, NRS_REF={r}: NRS_REF must be "
                             "even, positive and at most NRS_NORM")
    normal_pixel_mask(irs2_length(n, r), n, r)  # raises DataShapeError for an invalid NRS_NORM
    blocks = _AMP_PIXELS // n
    j = np.arange(_AMP_PIXELS)
    i = np.arange(blocks * r)
    normal_pos = j + r * ((j + n // 2) // n)
    normal_slot = j + (r + 2) * ((j + n // 2) // n)
    ref_pos = i + n * (i // r) + n // 2
    ref_slot = i + (n + 2) * (i // r) + n // 2 + 1
    section = _AMP_PIXELS + blocks * r

    # The interleaved-reference series carries values in a window of 2r slots around each
    # group of r reference samples (the group, the jump slot either side, and r/2 - 1 normal
    # slots beyond each): each sample is written twice, in the order of the IDL original
    # (0, 2, 0, 2, 1, 3, 1, 3 for r = 4), so the series has no holes around the jumps.
    block = n + r + 2
    first = n // 2 + 1  # slot of the group's first reference sample within its block
    window = np.arange(first - r // 2, first + 3 * r // 2)
    half = np.arange(r // 2)
    sources = np.column_stack([half, half + r // 2, half, half + r // 2]).ravel() + first
    offsets = block * np.arange(blocks)[:, None]
    window_slot = (offsets + window).ravel()
    window_source = (offsets + sources).ravel()
    if r % 4 == 2:  # the jwst (IDL) recipe swaps the samples of each pair for such NRS_REF
        window_source = window_source.reshape(-1, 2)[:, ::-1].ravel()

    sample_slot = np.empty(section, np.int64)
    sample_slot[normal_pos] = normal_slot
    sample_slot[ref_pos] = ref_slot
    return _Layout(n, r, section, _series_length(n, r), normal_pos, normal_slot, ref_pos,
                   ref_slot, window_slot, window_source, sample_slot)


def _detector_name(detector) -> str:
    det = str(detector or "").strip().upper()
    if det not in ("NRS1", "NRS2"):
        raise DataShapeError(f"IRS2 data from detector {detector!r}: only NIRSpec NRS1 and NRS2 "
                             "read out in IRS2")
    return det


def _dms_row_of_x(x, detector: str, length: int):
    """DMS row of detector column ``x`` (the readout direction): NRS2 frames are turned by 180
    degrees."""
    return x if detector == "NRS1" else length - 1 - x


def _slot_rows(layout: _Layout, detector: str) -> np.ndarray:
    """The DMS row read into each time slot: int64 array (5, row), -1 for idle slots."""
    rows = np.full((5, layout.row), -1, np.int64)
    pos = np.arange(layout.section)
    length = 5 * layout.section
    for s in range(5):
        # sections 0, 2, 4 are read towards decreasing detector column
        x = s * layout.section + (layout.section - 1 - pos if s % 2 == 0 else pos)
        rows[s, layout.sample_slot] = _dms_row_of_x(x, detector, length)
    return rows


# -- bad interleaved reference pixels ---------------------------------------------------------

def _validate_frames(data, pixeldq, scipix_n, refpix_r, groupdq=None):
    data = np.asarray(data)
    length = irs2_length(scipix_n, refpix_r)
    if data.ndim != 4 or data.shape[-2:] != (length, NORMAL_SIZE):
        raise DataShapeError(f"IRS2 data must be (nints, ngroups, {length}, {NORMAL_SIZE}) for "
                             f"NRS_NORM={scipix_n}, NRS_REF={refpix_r}; got {data.shape}")
    if pixeldq is not None and np.shape(pixeldq) != data.shape[-2:]:
        raise DataShapeError(f"IRS2 pixeldq must be {data.shape[-2:]}; got {np.shape(pixeldq)}")
    if groupdq is not None and np.shape(groupdq) != data.shape:
        raise DataShapeError(f"IRS2 groupdq must be {data.shape}; got {np.shape(groupdq)}")
    return data


def _pair_rows(layout: _Layout) -> np.ndarray:
    """First DMS rows of the pairs of interleaved reference samples, in each of the five
    sections (the reference output included), as jwst's flagging walks them."""
    starts = np.arange(layout.scipix_n // 2, layout.section, layout.scipix_n + layout.refpix_r)
    in_section = (starts[:, None] + np.arange(0, layout.refpix_r, 2)).ravel()
    return (np.arange(5)[:, None] * layout.section + in_section).ravel()


def _sigma_clipped_mean_std(values: np.ndarray, n_sigma: float):
    """Mean and standard deviation of the finite ``values`` after sigma clipping (astropy's
    ``sigma_clipped_stats``: median centre, 5 iterations at most, as jwst calls it). NaN, NaN for
    no finite values."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.nan, np.nan
    mean, _, std = sigma_clipped_stats(finite, sigma=n_sigma)
    return mean, std


def _pair_statistics(frames: np.ndarray, first: np.ndarray):
    """Per pair of rows (first, first + 1) of one integration (ngroups, ny, nx): the mean
    absolute difference between the two rows, and the mean and standard deviation of both rows
    together, over all groups and columns. float64 arrays of shape (npairs,)."""
    ngroups, _, nx = frames.shape
    abs_diff = np.zeros(first.size)
    total = np.zeros(first.size)
    for g in range(ngroups):
        a = frames[g, first].astype(np.float64)
        b = frames[g, first + 1].astype(np.float64)
        abs_diff += np.abs(b - a).sum(axis=1)
        total += a.sum(axis=1) + b.sum(axis=1)
    count = ngroups * nx
    mean = total / (2 * count)
    squares = np.zeros(first.size)
    for g in range(ngroups):  # second pass: the spread about the mean, without cancellation
        for rows in (first, first + 1):
            squares += ((frames[g, rows].astype(np.float64) - mean[:, None]) ** 2).sum(axis=1)
    return abs_diff / count, mean, np.sqrt(squares / (2 * count))


def flag_bad_refpix(data, pixeldq, detector, scipix_n: int = 16, refpix_r: int = 4,
                    n_sigma: float = 3.0) -> np.ndarray:
    """Flag interleaved reference pixels whose pairs stand out (jwst's ``flag_only`` pass).

    Every section of 640 rows (the reference output too) is examined for each integration: for
    each pair of consecutive interleaved reference samples not yet flagged BAD_REF_PIXEL, the
    mean absolute difference of the two rows, their mean and their standard deviation (over
    groups and columns). A pair whose statistic exceeds the sigma-clipped mean of that
    statistic over the section by more than ``n_sigma`` clipped standard deviations is flagged
    (both rows), in any integration.

    Parameters
    ----------
    data : ndarray of shape (nints, ngroups, 3200, 2048)
        IRS2 data in DMS orientation. Not modified.
    pixeldq : ndarray of shape (3200, 2048), uint32
        Not modified.
    detector : str
        NRS1 or NRS2 (the statistics do not depend on it; it is checked).
    scipix_n, refpix_r : int
        NRS_NORM and NRS_REF.
    n_sigma : float
        The flagging threshold (the refpix step's ``ovr_corr_mitigation_ftr``).

    Returns
    -------
    ndarray of shape (3200, 2048), uint32
        A copy of ``pixeldq`` with BAD_REF_PIXEL | DO_NOT_USE on every row flagged before (in any
        column) or now.

    Raises
    ------
    DataShapeError
        Shapes do not fit an IRS2 exposure, or ``detector`` is not NIRSpec.
    """
    _detector_name(detector)
    layout = _layout(scipix_n, refpix_r)
    data = _validate_frames(data, pixeldq, scipix_n, refpix_r)
    pixeldq = np.asarray(pixeldq)
    already = np.any(pixeldq & _dq.BAD_REF_PIXEL, axis=1)
    bad = already.copy()
    first = _pair_rows(layout)
    pair_section = first // layout.section
    candidate = ~(already[first] | already[first + 1])  # pairs flagged before stay out of stats
    for frames in data:
        stats = _pair_statistics(frames, first)
        for s in range(5):
            use = candidate & (pair_section == s)
            outliers = np.zeros(first.size, bool)
            for values in stats:
                centre, spread = _sigma_clipped_mean_std(values[use], n_sigma)
                with np.errstate(invalid="ignore"):
                    outliers |= use & ((values - centre) > n_sigma * spread)
            bad[first[outliers]] = True
            bad[first[outliers] + 1] = True
    out = pixeldq.astype(np.uint32, copy=True)
    out[bad] |= np.uint32(_dq.BAD_REF_PIXEL | _dq.DO_NOT_USE)
    return out


def _replacement_sources(position: int, bad: np.ndarray, is_ref: np.ndarray, low: int,
                         high: int, period: int) -> tuple[int, int]:
    """Where the value for a bad sample at ``position`` comes from, along the readout axis.

    The samples ``period`` before and after (the same pair position in the neighbouring groups
    of reference pixels) are averaged if both are good and within [low, high); one good one is
    copied; otherwise the good interleaved reference sample 2 before, else 2 after, is copied;
    otherwise the value is 0 (the correction then interpolates over it).

    Returns
    -------
    (int, int)
        Two source positions to average, one and -1 to copy, or -1, -1 for zero.
    """
    below, above = position - period, position + period
    sources = [p for p, ok in ((below, below >= low), (above, above < high))
               if ok and not bad[p]]
    if len(sources) == 2:
        return sources[0], sources[1]
    if sources:
        return sources[0], -1
    for neighbour, ok in ((position - 2, position - 2 >= low), (position + 2, position + 2 < high)):
        if ok and is_ref[neighbour] and not bad[neighbour]:
            return neighbour, -1
    return -1, -1


class _RowPlan(NamedTuple):
    """Rows of an IRS2 frame (DMS) to overwrite, each from the original values of at most two
    other rows: the mean of ``first`` and ``second``, a copy of ``first`` (second = -1), or 0
    (both -1)."""

    target: np.ndarray
    first: np.ndarray
    second: np.ndarray

    @staticmethod
    def empty() -> "_RowPlan":
        none = np.zeros(0, np.int64)
        return _RowPlan(none, none, none)

    def __add__(self, other) -> "_RowPlan":  # targets never repeat between the two plans
        return _RowPlan(*(np.concatenate([a, b]) for a, b in zip(self, other, strict=True)))

    def values(self, frame: np.ndarray) -> np.ndarray:
        """New values of the target rows, float32 (..., ntargets, nx), from ``frame`` (..., ny,
        nx) as read (the sources are never targets)."""
        frame = np.asarray(frame)
        out = np.zeros(frame.shape[:-2] + (self.target.size, frame.shape[-1]), np.float32)
        pair = (self.first >= 0) & (self.second >= 0)
        single = (self.first >= 0) & (self.second < 0)
        if pair.any():  # float32 sum, then halve: the rounding of numpy's mean of two
            out[..., pair, :] = (frame[..., self.first[pair], :].astype(np.float32)
                                 + frame[..., self.second[pair], :]) / np.float32(2)
        if single.any():
            out[..., single, :] = frame[..., self.first[single], :]
        return out


def _flagged_rows_plan(pixeldq: np.ndarray, layout: _Layout) -> _RowPlan:
    """jwst's ``replace_only`` pass: every row flagged BAD_REF_PIXEL, replaced section by section
    along the DMS rows."""
    bad = np.any(np.asarray(pixeldq) & _dq.BAD_REF_PIXEL, axis=1)
    first = _pair_rows(layout)
    is_ref = np.zeros(bad.size, bool)
    is_ref[first] = is_ref[first + 1] = True
    period = layout.scipix_n + layout.refpix_r
    plan = []
    for row in np.flatnonzero(bad):
        low = row // layout.section * layout.section
        plan.append((row,) + _replacement_sources(row, bad, is_ref, low, low + layout.section,
                                                  period))
    return _plan_from(plan)


def _plan_from(rows: list) -> _RowPlan:
    if not rows:
        return _RowPlan.empty()
    return _RowPlan(*(np.array(col, np.int64) for col in zip(*rows, strict=True)))


def _dq_table_plan(pixeldq: np.ndarray, reference: Irs2Reference, layout: _Layout,
                   detector: str) -> _RowPlan:
    """jwst's ``clobber_ref``: the interleaved reference pairs marked bad in the reference
    file's DQ table and not flagged in ``pixeldq``, replaced along the detector row. The table
    is worked through row by row, so a pixel marked in a later table row can still be the
    source for an earlier one."""
    length = 5 * layout.section
    n, r = layout.scipix_n, layout.refpix_r
    flagged_rows = np.any(np.asarray(pixeldq) & _dq.BAD_REF_PIXEL, axis=1)
    bad = flagged_rows[_dms_row_of_x(np.arange(length), detector, length)]  # along x
    is_ref = ~normal_pixel_mask(length, n, r)
    is_ref[:layout.section] = is_ref[2 * layout.section:3 * layout.section]
    plan = []
    for output, odd_even, mask in zip(reference.output.tolist(), reference.odd_even.tolist(),
                                      reference.mask.tolist(), strict=True):
        offset = output * layout.section
        # ODD_EVEN counts pairs along the readout; even amplifiers read the other way
        pair = (3 - odd_even) if output % 2 == 0 else odd_even
        bits = [k for k in range(32) if mask >> k & 1]
        new = []
        for k in bits:
            x = offset + n // 2 + k * (n + r) + 2 * (pair - 1)
            if x + 1 >= offset + layout.section:
                raise ReferenceFileError(
                    f"{reference.name}: extension DQ column MASK bit {k} for OUTPUT {output} "
                    f"points outside the amplifier for NRS_NORM={n}, NRS_REF={r}")
            for px in (x, x + 1):
                if not bad[px]:
                    bad[px] = True
                    new.append(px)
        for px in new:
            plan.append((px,) + _replacement_sources(px, bad, is_ref, offset,
                                                     offset + layout.section, n + r))
    if not plan:
        return _RowPlan.empty()
    x_plan = np.array(plan, np.int64)
    rows = np.where(x_plan >= 0, _dms_row_of_x(x_plan, detector, length), -1)
    return _RowPlan(rows[:, 0], rows[:, 1], rows[:, 2])


def replace_bad_refpix(data, pixeldq, detector, scipix_n: int = 16,
                       refpix_r: int = 4) -> np.ndarray:
    """Replace the rows flagged BAD_REF_PIXEL (jwst's ``replace_only`` pass).

    Each flagged row takes the mean of the rows ``scipix_n + refpix_r`` before and after (the
    same pair position in the neighbouring groups), or whichever one is good, or the good
    interleaved reference row 2 before or after, or 0, within its 640-row section.

    Parameters
    ----------
    data : ndarray of shape (nints, ngroups, 3200, 2048)
        IRS2 data in DMS orientation. Not modified.
    pixeldq : ndarray of shape (3200, 2048), uint32
        After :func:`flag_bad_refpix`.
    detector : str
        NRS1 or NRS2 (checked only).
    scipix_n, refpix_r : int
        NRS_NORM and NRS_REF.

    Returns
    -------
    ndarray of shape (nints, ngroups, 3200, 2048), float32
        A copy of ``data`` with the flagged rows replaced.
    """
    _detector_name(detector)
    layout = _layout(scipix_n, refpix_r)
    data = _validate_frames(data, pixeldq, scipix_n, refpix_r)
    plan = _flagged_rows_plan(pixeldq, layout)
    out = np.array(data, dtype=np.float32, copy=True)
    if plan.target.size:
        out[..., plan.target, :] = plan.values(data)
    return out


# -- the correction -------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _fill_filter(scipix_n: int, refpix_r: int) -> np.ndarray:
    """The weights of the reference output's gap filling for real FFTs: float64
    (row * 2048 // 2 + 1,). 1 over the lowest and the highest (next to Nyquist) frequencies, 0
    in between, joined by cosine tapers (jwst's ``aa``, halved)."""
    row = _series_length(scipix_n, refpix_r)
    block = scipix_n + refpix_r + 2
    taper_length = 110000 // block
    flat = row // block * NORMAL_SIZE // 2 - taper_length // 2
    taper = (np.cos(np.arange(taper_length) * np.pi / taper_length) + 1.0) / 2.0
    half = row * NORMAL_SIZE // 2
    zeros = np.zeros(half - 2 * flat - 2 * taper_length)
    weights = np.concatenate([np.ones(flat), taper, zeros, taper[::-1], np.ones(flat)])
    return np.append(weights, weights[0])  # the Nyquist frequency mirrors frequency 0


@lru_cache(maxsize=4)
def _time_grid(row: int) -> np.ndarray:
    """Time of each slot of a frame's series about the frame's mid time: float32 (row, 2048),
    indexed [slot, detector row] (the layout of the working arrays)."""
    n = row * NORMAL_SIZE
    t = np.arange(n, dtype=np.float32).reshape(NORMAL_SIZE, row)
    t -= np.float32((n - 1) / 2.0)  # exact: half-integers below 2**23
    return np.ascontiguousarray(t.T)


def _remove_slope(section: np.ndarray, time: np.ndarray) -> None:
    """Subtract, in place, a straight line in time fitted to the nonzero samples of the
    detector's top and bottom four rows, from the nonzero samples of one section's frame
    (row, 2048) float32 (zeros are idle slots or missing samples and stay 0).

    The fit is done in float32 with the samples in jwst's order (detector row by detector
    row), so the line is the same to the bit: a sample the line cancels exactly becomes a gap
    of the reference output, and one rounding more or less there would move a gap.
    """
    edge = section[:, _FIT_ROWS].T  # (8, row): jwst's summation order
    used = edge != 0
    y = edge[used]
    count = y.size
    if count == 0:
        return
    t = time[:, _FIT_ROWS].T[used]
    mean_t, mean_y = t.mean(), y.mean()  # float32, numpy's pairwise sums
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        slope = ((t * y).sum() - np.float32(count) * mean_t * mean_y) / (
            (t * t).sum() - np.float32(count) * mean_t * mean_t)
        intercept = mean_y - slope * mean_t
        line = intercept + time * slope
    line *= section != 0
    section -= line


def _fill_reference_output(series: np.ndarray, keep: np.ndarray, scipix_n: int,
                           refpix_r: int) -> np.ndarray:
    """Fill the gaps of the reference output's series (row * 2048,) float32, in place.

    Zeros (idle slots, missing samples) first take a cosine-weighted mean of their nonzero
    neighbours within 15 slots (circularly); then everything but the normal-pixel slots
    (``keep``) is replaced by the low-pass-filtered series, three times over.
    """
    import scipy.fft  # imported here: slow to load, and only the correction needs it
    from scipy.ndimage import convolve1d

    present = (series != 0).astype(np.float32)
    weighted = convolve1d(series, _COSINE_TAPS, mode="wrap")
    weights = convolve1d(present, _COSINE_TAPS, mode="wrap")
    empty = weights == 0
    weighted[empty] = 0
    weights[empty] = 1
    # Adding (not assigning) lets a non-finite neighbour spread, as in jwst
    series += weighted / weights * (np.float32(1) - present)

    kept = series[keep]
    low_pass = _fill_filter(scipix_n, refpix_r)
    for _ in range(_FILL_ITERATIONS):
        spectrum = scipy.fft.rfft(series)
        np.multiply(spectrum, low_pass, out=spectrum, casting="same_kind")
        series[:] = scipy.fft.irfft(spectrum, n=series.size)
        series[keep] = kept
    return series


class _Setup(NamedTuple):
    layout: _Layout
    detector: str
    slot_rows: np.ndarray  # (5, row) DMS row of each slot, -1 idle
    idle: np.ndarray  # (row,) bool
    time: np.ndarray  # (row, 2048) float32
    keep: np.ndarray  # (row * 2048,) bool: normal-pixel slots of the reference output series
    alpha: np.ndarray  # (4, n/2 + 1) complex64
    beta: np.ndarray


def _correct_group(frame, b_offset, plan, plan_offset, setup: _Setup, preserve_refpix: bool,
                   out: np.ndarray) -> None:
    """Correct one group (3200, 2048) of one integration into ``out`` (2048 or 3200, 2048)."""
    import scipy.fft

    lay = setup.layout
    flip = setup.detector == "NRS2"  # DMS columns run against detector rows

    # The deviation from the ramp mean, float32 as jwst rounds it, with replaced rows
    dev = np.empty(frame.shape, np.float32)
    np.subtract(frame, b_offset, out=dev, casting="same_kind")
    if plan.target.size:
        dev[plan.target] = (plan.values(frame) - plan_offset).astype(np.float32)

    # Working layout: [section, slot, detector row], every section read the same way
    work = (dev[:, ::-1] if flip else dev)[np.maximum(setup.slot_rows, 0)]
    del dev
    work[:, setup.idle] = 0
    for s in range(5):
        _remove_slope(work[s], setup.time)

    # The reference output as one series in read order: [detector row, slot] flattened
    ref_out = np.ascontiguousarray(work[0].T).reshape(-1)
    _fill_reference_output(ref_out, setup.keep, lay.scipix_n, lay.refpix_r)
    ref_spectrum = scipy.fft.rfft(ref_out)

    # The interleaved reference pixels' series of each amplifier
    interleaved = np.zeros((4, NORMAL_SIZE, lay.row), np.float32)
    interleaved[:, :, lay.window_slot] = work[1:, lay.window_source].transpose(0, 2, 1)
    spectra = scipy.fft.rfft(interleaved.reshape(4, -1))
    del interleaved
    for k in range(4):
        spectra[k] *= setup.beta[k]
        spectra[k] += setup.alpha[k] * ref_spectrum
    correction = scipy.fft.irfft(spectra, n=lay.series)
    del spectra
    correction = correction.reshape(4, NORMAL_SIZE, lay.row)

    if preserve_refpix:
        slots = np.sort(lay.sample_slot)  # every sample, in readout order
        ref_out_frame = ref_out.reshape(NORMAL_SIZE, lay.row)[:, slots].T
        rows = setup.slot_rows[0, slots]
        _put_rows(out, rows, ref_out_frame, b_offset[rows], flip)
        normal = np.isin(slots, lay.normal_slot)
    else:
        slots = lay.normal_slot
        # output row of each IRS2 row (the normal ones)
        out_row = np.cumsum(dms_row_mask(setup.detector, 5 * lay.section, lay.scipix_n,
                                         lay.refpix_r)) - 1
    for k in range(4):
        values = work[k + 1, slots] - correction[k][:, slots].T
        rows = setup.slot_rows[k + 1, slots]
        if preserve_refpix:  # the interleaved reference pixels stay without their ramp mean
            _put_rows(out, rows[normal], values[normal], b_offset[rows[normal]], flip)
            _put_rows(out, rows[~normal], values[~normal], None, flip)
        else:
            _put_rows(out, out_row[rows], values, b_offset[rows], flip)


def _put_rows(out, rows, values, offset, flip):
    """``out[rows] = values + offset`` (the sum in float64, rounded to float32 as jwst does;
    no offset when None), turning the working [..., detector row] order back into DMS
    columns."""
    if flip:
        values = values[:, ::-1]
    out[rows] = values if offset is None else values + offset


def correct_irs2(data, pixeldq, groupdq, reference: Irs2Reference, detector,
                 scipix_n: int = 16, refpix_r: int = 4, preserve_refpix: bool = False,
                 nthreads: int | None = None, replace_flagged: bool = False) -> Irs2Result:
    """Subtract the reference output and the interleaved reference pixels (jwst's
    ``correct_model``), and strip them from the frames.

    The pairs of interleaved reference pixels marked bad in the reference file's DQ table (and
    not flagged BAD_REF_PIXEL in ``pixeldq``) are first replaced from their neighbours. Rows
    already flagged are used as they are unless ``replace_flagged``: see
    :func:`irs2_subtract_reference` for the full step (flag, replace, correct).

    Parameters
    ----------
    data : ndarray of shape (nints, ngroups, 3200, 2048)
        IRS2 data in DMS orientation, float32 (other dtypes are converted group by group). Not
        modified.
    pixeldq : ndarray of shape (3200, 2048), uint32
    groupdq : ndarray of shape (nints, ngroups, 3200, 2048), uint8
    reference : Irs2Reference
    detector : str
        NRS1 or NRS2.
    scipix_n, refpix_r : int
        NRS_NORM and NRS_REF.
    preserve_refpix : bool
        Keep the IRS2 layout: the reference output (gap-filled, its ramp mean restored) and the
        corrected interleaved reference pixels (without their ramp mean) stay in the output.
    nthreads : int, optional
        Threads correcting the groups of an integration in parallel (default 1); each holds
        its own work arrays (~100 MB for full frames).
    replace_flagged : bool
        Replace the rows flagged BAD_REF_PIXEL in ``pixeldq`` from their neighbours first, as
        :func:`replace_bad_refpix` (without copying the data).

    Returns
    -------
    Irs2Result
        New arrays: data (nints, ngroups, 2048, 2048) float32, pixeldq (2048, 2048) and groupdq
        (nints, ngroups, 2048, 2048), the normal pixels only; with ``preserve_refpix`` the
        shapes of the input.

    Raises
    ------
    DataShapeError
        Shapes do not fit an IRS2 exposure, or ``detector`` is not NIRSpec.
    ReferenceFileError
        The reference's weights or DQ table do not fit this readout.

    Notes
    -----
    One integration at a time. Besides the output, the work arrays are the ramp mean (float64,
    52 MB for full frames) and, per thread, one group's series and spectra (~100 MB),
    independent of the number of groups. Agreement with jwst: float32 rounding of the output
    (the real FFTs are not bitwise jwst's complex ones; everything else is).
    """
    detector = _detector_name(detector)
    layout = _layout(int(scipix_n), int(refpix_r))
    data = _validate_frames(data, pixeldq, scipix_n, refpix_r, groupdq)
    pixeldq = np.asarray(pixeldq)
    if reference.alpha.shape != (4, layout.series) or reference.beta.shape != (4, layout.series):
        raise ReferenceFileError(
            f"{reference.name}: weights of length {reference.alpha.shape[-1]} do not fit "
            f"IRS2 readout with NRS_NORM={scipix_n}, NRS_REF={refpix_r} ({layout.series})")
    workers = max(1, int(nthreads or 1))
    plan = _flagged_rows_plan(pixeldq, layout) if replace_flagged else _RowPlan.empty()
    plan = plan + _dq_table_plan(pixeldq, reference, layout, detector)
    slot_rows = _slot_rows(layout, detector)
    keep = np.zeros((NORMAL_SIZE, layout.row), bool)
    keep[:, layout.normal_slot] = True
    alpha, beta = reference.half_weights
    setup = _Setup(layout, detector, slot_rows, slot_rows[0] < 0, _time_grid(layout.row),
                   keep.reshape(-1), alpha, beta)

    nints, ngroups, length, nx = data.shape
    row_mask = dms_row_mask(detector, length, scipix_n, refpix_r)
    out_rows = length if preserve_refpix else NORMAL_SIZE
    out = np.empty((nints, ngroups, out_rows, nx), np.float32)
    for i in range(nints):
        # The mean over the ramp of each pixel (with the replaced rows), summed group by group
        b_offset = np.zeros((length, nx))
        replaced = np.zeros((plan.target.size, nx))
        for g in range(ngroups):
            frame = np.asarray(data[i, g], dtype=np.float32)
            b_offset += frame
            if plan.target.size:
                replaced += plan.values(frame)
        b_offset[plan.target] = replaced
        b_offset /= ngroups
        plan_offset = b_offset[plan.target]

        def correct_group(g, i=i, b_offset=b_offset, plan_offset=plan_offset):
            _correct_group(np.asarray(data[i, g], dtype=np.float32), b_offset, plan,
                           plan_offset, setup, preserve_refpix, out[i, g])

        # Groups are independent once the ramp mean is known. Threads over groups: the
        # transforms are single 1-D FFTs, which scipy's own workers do not split.
        if workers > 1 and ngroups > 1:
            with ThreadPoolExecutor(min(workers, ngroups)) as pool:
                list(pool.map(correct_group, range(ngroups)))
        else:
            for g in range(ngroups):
                correct_group(g)

    if preserve_refpix:
        return Irs2Result(out, pixeldq.copy(), np.array(groupdq, copy=True))
    return Irs2Result(out, from_irs2(pixeldq, row_mask), from_irs2(np.asarray(groupdq), row_mask))


def irs2_subtract_reference(data, pixeldq, groupdq, reference: Irs2Reference, detector,
                            scipix_n: int = 16, refpix_r: int = 4, n_sigma: float = 3.0,
                            preserve_refpix: bool = False,
                            nthreads: int | None = None) -> Irs2Result:
    """The IRS2 reference-pixel correction as the refpix step runs it.

    :func:`flag_bad_refpix` (threshold ``n_sigma``), then the flagged rows replaced as by
    :func:`replace_bad_refpix` (without copying the data), then :func:`correct_irs2`.

    Parameters and returns as :func:`correct_irs2`; the returned pixeldq carries
    BAD_REF_PIXEL | DO_NOT_USE on the flagged rows (before stripping). No input is modified.
    """
    flagged = flag_bad_refpix(data, pixeldq, detector, scipix_n, refpix_r, n_sigma)
    return correct_irs2(data, flagged, groupdq, reference, detector, scipix_n, refpix_r,
                        preserve_refpix, nthreads, replace_flagged=True)
