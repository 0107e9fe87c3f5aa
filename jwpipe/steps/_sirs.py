"""SIRS: the side-pixel part of the near-IR refpix correction by convolution kernels.

Simple Improved Reference Subtraction (Rauscher 2022, the refpix step's
``refpix_algorithm='sirs'``) predicts the 1/f noise of each amplifier's pixels in a row from the
left and right reference columns of the rows around it, with one convolution kernel per
amplifier and side. The SIRSKERNEL reference (ASDF) holds the kernels' real-FFT coefficients,
``gamma`` (left) and ``zeta`` (right), shape (4, n), per detector.

Per image, in the detector frame (rows along the slow axis, amplifiers along the fast axis), after
the top/bottom correction:

1. Reference pixels further than ``sigreject`` robust sigma (1.48 x the median absolute deviation)
   from the median of their side (all rows x 4 columns) are dropped.
2. Each row's left and right values are the sums of its good pixels divided by 4.
3. For amplifier ``a``: template = conv(left, k_left[a]) * norm_left + conv(right, k_right[a]) *
   norm_right, the norms conv(1, k) / conv(n_good / 4, k) restoring the weight of the dropped
   pixels; the template is subtracted from every pixel of the amplifier's columns in that row.

The kernels are the central ``2 * halfwidth + 1`` taps of the coefficients' inverse real FFT,
centred, each smoothed by a normalised Gaussian of width ``gaussmooth`` taps. As in the
reference pipeline, DQ flags take no part (outliers are rejected by value) and ``side_gain`` does
not scale this correction. Unlike it, non-finite reference pixels are rejected rather than
spreading NaN over the image, and a row whose kernel reaches no good reference pixel of a side
(possible only for kernels that are exactly zero beyond a few lags) gets no correction from that
side instead of NaN.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from ..errors import ReferenceFileError
from ._stage1_refs import open_ref

__all__ = ["SirsKernels", "read_sirs_coefficients", "sirs_kernels", "sirs_row_templates",
           "subtract_sirs_templates"]

N_AMPLIFIERS = 4
MAD_TO_SIGMA = 1.48      # the reference pipeline's factor (1.4826 for a Gaussian)


class SirsKernels(NamedTuple):
    """Convolution kernels of one detector, float64, shape (4, 2 * halfwidth + 1) each."""

    left: np.ndarray
    right: np.ndarray


def read_sirs_coefficients(path, detector: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The Fourier coefficients of one detector in a SIRSKERNEL reference.

    Parameters
    ----------
    path : str or Path
        The SIRSKERNEL reference (ASDF: a mapping per lower-case detector name, with ``gamma``
        and ``zeta`` arrays).
    detector : str
        DETECTOR keyword of the exposure (any case).

    Returns
    -------
    (gamma, zeta) : ndarrays of shape (4, n), complex128, or None
        Left- and right-side coefficients per amplifier; None when the file has no entry for
        the detector (the step then uses the running median, as the reference pipeline does).

    Raises
    ------
    ReferenceFileError
        The file is not a SIRSKERNEL reference, or the detector's entry lacks an array or has
        arrays of the wrong shape.
    """
    ref = open_ref(path, "sirskernel")
    entry = {str(k).lower(): v for k, v in ref.tree.items()}.get(str(detector).strip().lower())
    if entry is None:
        return None
    where = f"{ref.path}: entry {str(detector).lower()!r}"
    if not isinstance(entry, dict):
        raise ReferenceFileError(f"{where} is not a mapping with 'gamma' and 'zeta' arrays")
    arrays = []
    for name in ("gamma", "zeta"):
        if name not in entry:
            raise ReferenceFileError(f"{where} has no {name!r} array")
        value = np.asarray(entry[name])
        if value.ndim != 2 or value.shape[0] != N_AMPLIFIERS or value.shape[1] < 2 \
                or not np.issubdtype(value.dtype, np.number):
            raise ReferenceFileError(f"{where}: {name!r} must be numeric of shape "
                                     f"({N_AMPLIFIERS}, n), got {value.dtype} {value.shape}")
        arrays.append(value.astype(np.complex128))
    if arrays[0].shape != arrays[1].shape:
        raise ReferenceFileError(f"{where}: 'gamma' {arrays[0].shape} and 'zeta' "
                                 f"{arrays[1].shape} differ in shape")
    return arrays[0], arrays[1]


def sirs_kernels(gamma: np.ndarray, zeta: np.ndarray, gaussmooth: float = 1.0,
                 halfwidth: int = 30, *, name: str = "SIRSKERNEL") -> SirsKernels:
    """Convolution kernels from SIRS Fourier coefficients.

    Parameters
    ----------
    gamma, zeta : ndarray of shape (4, n), complex
        Real-FFT coefficients of the left and right kernels, per amplifier (``n`` = 1025 for
        2048 rows).
    gaussmooth : float
        Width (sigma, taps) of the Gaussian low-pass applied to each kernel; > 0.
    halfwidth : int
        The kernels keep lags -halfwidth..halfwidth; at most n - 1.
    name : str
        The reference's name, for errors.

    Returns
    -------
    SirsKernels
        ``left`` and ``right``, float64 of shape (4, 2 * halfwidth + 1); tap ``halfwidth + d``
        weighs the reference row ``d`` rows before the corrected one.
    """
    n = gamma.shape[-1] - 1
    if not 1 <= halfwidth <= n:
        raise ReferenceFileError(f"{name}: {n + 1} Fourier coefficients per amplifier give "
                                 f"kernels of at most {n} lags each side; halfwidth={halfwidth}")
    lags = np.arange(-halfwidth, halfwidth + 1)
    window = np.exp(-lags ** 2 / (2.0 * gaussmooth ** 2))
    window /= window.sum()

    def kernel(coefficients):
        # Lag 0 of the inverse transform is moved to the centre, index n.
        full = np.fft.fftshift(np.fft.irfft(coefficients, axis=-1), axes=-1)
        taps = full[:, n - halfwidth:n + halfwidth + 1]
        return np.stack([np.convolve(row, window, mode="same") for row in taps])

    return SirsKernels(kernel(gamma), kernel(zeta))


def sirs_row_templates(left: np.ndarray, right: np.ndarray, kernels: SirsKernels,
                       sigreject: float = 4.0) -> np.ndarray:
    """Per-row, per-amplifier 1/f templates from the side reference columns.

    Parameters
    ----------
    left, right : ndarray of shape (m, nrows, 4), float
        The 4 left and 4 right reference columns of ``m`` images in the detector frame (after
        the top/bottom correction), every row of the detector.
    kernels : SirsKernels
        From :func:`sirs_kernels`.
    sigreject : float
        Rejection limit, in robust standard deviations, of each side's pixels.

    Returns
    -------
    ndarray of shape (m, 4, nrows), float64
        What to subtract from each row of each amplifier.
    """
    sums, weights = [], []
    for side in (np.asarray(left, np.float64), np.asarray(right, np.float64)):
        flat = side.reshape(side.shape[0], -1)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)     # an all-NaN side: no pixel
            median = np.nanmedian(flat, axis=1)[:, None, None]
            sigma = MAD_TO_SIGMA * np.nanmedian(np.abs(flat - median[:, :, 0]), axis=1)
            good = np.abs(side - median) <= sigreject * sigma[:, None, None]  # NaN: rejected
        sums.append(np.where(good, side, 0.0).sum(axis=2) / 4.0)        # (m, nrows)
        weights.append(good.sum(axis=2) / 4.0)
    m, nrows = sums[0].shape
    templates = np.zeros((m, N_AMPLIFIERS, nrows))
    ones = np.ones(nrows)
    with np.errstate(invalid="ignore", divide="ignore"):
        for amp in range(N_AMPLIFIERS):
            sides = zip(sums, weights, (kernels.left[amp], kernels.right[amp]), strict=True)
            for side_sum, weight, kernel in sides:
                # np.convolve(x, kernel, 'same') along rows: zero beyond the detector edges
                norm = _convolve(ones, kernel) / _convolve(weight, kernel)
                part = _convolve(side_sum, kernel) * norm
                # A row whose kernel reaches no good pixel of this side (0/0; only with kernels
                # cut to zero at the detector edge) gets nothing from it, not NaN.
                templates[:, amp] += np.where(np.isfinite(part), part, 0.0)
    return templates


def _convolve(values: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``np.convolve(v, kernel, mode='same')`` along the last axis (odd-length kernel)."""
    from scipy.ndimage import convolve1d  # here: scipy.ndimage takes 0.1 s to import

    return convolve1d(values, kernel, axis=-1, mode="constant", cval=0.0)


def subtract_sirs_templates(det: np.ndarray, kernels: SirsKernels, sigreject: float = 4.0
                            ) -> None:
    """Apply the SIRS correction to full-frame images in the detector frame, in place.

    Parameters
    ----------
    det : ndarray of shape (m, 2048, 2048), float32
        Images in the detector frame (:func:`jwpipe.steps.refpix.detector_view`, possibly a
        strided view), already corrected with the top/bottom reference rows; modified.
    kernels : SirsKernels
        The detector's kernels (:func:`sirs_kernels`).
    sigreject : float
        Rejection limit of the side reference pixels, robust sigma.
    """
    templates = sirs_row_templates(det[:, :, :4], det[:, :, -4:], kernels, sigreject)
    width = det.shape[-1] // N_AMPLIFIERS
    for i in range(det.shape[0]):
        for amp in range(N_AMPLIFIERS):
            block = det[i, :, amp * width:(amp + 1) * width]
            # In double precision, rounded once, as the reference pipeline does.
            block[...] = block - templates[i, amp][:, None]
