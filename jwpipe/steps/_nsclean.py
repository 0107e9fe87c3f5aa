"""NSClean: a fit of 1/f noise in frequency space, for clean_flicker_noise ``fit_method='fft'``.

The reference pipeline (``jwst.clean_flicker_noise``: ``fft_clean_full_frame`` with class
``NSClean``, ``fft_clean_subarray`` with class ``NSCleanSubarray``, after Rauscher 2024, PASP 136,
015001) models the background residual of a NIRSpec image (background level removed, sources
masked) by a weighted least-squares fit of low-frequency Fourier components to the usable pixels,
in detector coordinates where each row is one line of the fast readout axis:

- full frame (2048 x 2048): each line on its own (but 4 at each edge), Fourier frequencies up to a
  cosine cut-off at 1/256 cycles per pixel (half power; 1/1024 wide); the line's samples outside
  its median +- 3 x 1.4826 MAD replaced by that median; weights 1/density^2, the density being the
  fraction of usable pixels under a Gaussian of sigma 32 pixels along the line; the model is then
  smoothed across lines ("buffed") with a Gaussian of sigma 1.5 lines.
- subarray: the image as one time series of pixel reads (10 us each, 12 idle ticks at each line
  end), fitted in overlapping sections of about 512 usable pixels, each with frequencies below
  ~1.1 kHz (a cosine roll-off from 1061 to 1211 Hz; 150-200 Hz for ALLSLITS) and near the Nyquist
  frequency (roll-on 49943-49957 Hz: alternating column noise), weighted by 1/density^2 with a
  Gaussian density kernel of 1 / (8 x mean roll-off frequency) in time; outliers beyond 4 robust
  sigma and their 4 neighbours are dropped first; sections with <= 5% usable pixels are not
  corrected; the section models are blended with triangular weights.

Deliberate differences from the reference, each a correction of a defect that changes results:

- The fit uses a real basis (cosine and sine of each frequency), so a complete noise-free line in
  the fitted band is reproduced exactly even with pixels masked. The reference fits complex
  positive-frequency exponentials to real data and takes twice their real part; with missing
  pixels the negative-frequency half of each component then leaks into the fit. Both agree for
  complete, evenly weighted lines.
- The density kernel (for the weights) and the buffing kernel are centred. The reference places
  them one pixel (and one line) off centre after ``ifftshift``, so each line is weighted by its
  neighbour's mask and each buffed model line is shifted by one line.
- Singular fits (too few usable pixels in a line or section) take the minimum-norm least-squares
  solution instead of raising ``LinAlgError`` (which makes the reference skip the whole step).

All sums over pixels are Fourier sums (FFTs of the weights and of weights x data), so the normal
equations of every line come out of two FFTs per image; they are solved in float64.
"""

from __future__ import annotations

import numpy as np

from .._ext import _rowcol
from ..logs import get_logger

__all__ = ["FULL_FRAME_SHAPE", "SUBARRAY_CUTOFFS", "ALLSLITS_CUTOFFS", "to_detector_frame",
           "from_detector_frame", "lowpass_apodizer", "band_apodizer", "weighted_fourier_fit",
           "fit_full_frame", "fit_subarray", "noise_model"]

log = get_logger("clean_flicker_noise")

#: Images of this shape are fitted line by line (``NSClean``); others as subarrays.
FULL_FRAME_SHAPE = (2048, 2048)
#: Full frame: half-power frequency and width of the low-pass cosine cut-off, cycles per pixel.
FULL_FRAME_CUTOFF = 1.0 / (2 * 2048 / 16)
FULL_FRAME_KILL_WIDTH = FULL_FRAME_CUTOFF / 4
#: Full frame: Gaussian sigma (pixels along a line) of the usable-pixel density for the weights.
LINE_DENSITY_SIGMA = 32.0
#: Full frame: line samples beyond this many robust sigma from the line median are replaced by it.
LINE_CLIP = 3.0
#: Full frame: this many lines at each edge get no fit (reference pixels).
EDGE_LINES = 4
#: Full frame: Gaussian sigma (lines) of the smoothing of the model across lines.
BUFF_SIGMA = 1.5
#: Subarray: pixel dwell time (s) and idle ticks at the end of each line.
PIXEL_TIME = 10e-6
LINE_OVERHEAD = 12
#: Subarray: apodizer (Hz): unity below [0], roll-off to [1], zero to [2], roll-on to [3], unity.
SUBARRAY_CUTOFFS = (1061.0, 1211.0, 49943.0, 49957.0)
ALLSLITS_CUTOFFS = (150.0, 200.0, 49943.0, 49957.0)
#: Subarray: outliers beyond this many robust sigma (and their 4 neighbours) are not fitted.
SUBARRAY_CLIP = 4.0
#: Subarray: usable pixels per fitting section, and the least usable fraction to fit a section.
SECTION_PIXELS = 512
MIN_SECTION_FILL = 0.05
_MAD_TO_SIGMA = 1.4826


# -- detector orientation --------------------------------------------------------------------------

def to_detector_frame(image: np.ndarray, detector: str) -> np.ndarray:
    """A view of a NIRSpec image (DMS orientation) with fast-axis lines as rows.

    Parameters
    ----------
    image : ndarray of shape (ny, nx)
    detector : str
        'NRS1' is transposed; any other detector (NRS2) transposed and flipped along the lines,
        as in the reference.

    Returns
    -------
    ndarray of shape (nx, ny), a view
    """
    return image.T if detector.upper() == "NRS1" else image.T[::-1]


def from_detector_frame(image: np.ndarray, detector: str) -> np.ndarray:
    """Inverse of :func:`to_detector_frame`: shape (nlines, n) back to (n, nlines), a view."""
    return image.T if detector.upper() == "NRS1" else image[::-1].T


# -- filters ---------------------------------------------------------------------------------------

def lowpass_apodizer(n: int, half_power: float, width: float) -> np.ndarray:
    """Gain per ``rfft`` frequency of a length-``n`` series: 1, a half-cosine fall to 0, then 0.

    Parameters
    ----------
    n : int
    half_power : float
        Frequency (cycles per sample) of gain 0.5, the middle of the fall.
    width : float
        Width of the fall, cycles per sample.

    Returns
    -------
    ndarray of shape (n // 2 + 1,), float64
    """
    freq = np.fft.rfftfreq(n)
    fall = 0.5 * (1.0 - np.sin(np.pi * (freq - half_power) / width))
    gain = np.where(freq <= half_power - width / 2, 1.0, fall)
    return np.where(freq <= half_power + width / 2, gain, 0.0)


def band_apodizer(n: int, cutoffs, tick: float = PIXEL_TIME) -> np.ndarray:
    """Gain per ``rfft`` frequency of a length-``n`` series sampled every ``tick`` seconds.

    Unity below ``cutoffs[0]`` Hz, a cosine fall to zero at ``cutoffs[1]``, zero up to
    ``cutoffs[2]``, a cosine rise to unity at ``cutoffs[3]``, unity above.

    Returns
    -------
    ndarray of shape (n // 2 + 1,), float64
    """
    f0, f1, f2, f3 = cutoffs
    freq = np.fft.rfftfreq(n, tick)
    gain = np.zeros(freq.size)
    gain[freq < f0] = 1.0
    fall = (freq >= f0) & (freq < f1)
    gain[fall] = 0.5 * (1.0 + np.cos(np.pi * (freq[fall] - f0) / (f1 - f0)))
    rise = (freq >= f2) & (freq < f3)
    gain[rise] = 0.5 * (1.0 - np.cos(np.pi * (freq[rise] - f2) / (f3 - f2)))
    gain[freq >= f3] = 1.0
    return gain


# -- the weighted Fourier fit ----------------------------------------------------------------------

def _fourier_sums(spectrum: np.ndarray, n: int, freqs: np.ndarray) -> np.ndarray:
    """sum_t x[..., t] exp(-2 pi i q t / n) for integer frequencies q (any sign or size).

    Parameters
    ----------
    spectrum : ndarray of shape (m, n // 2 + 1), complex128
        ``rfft`` of the real series x, of length n.
    n : int
    freqs : ndarray of int, any shape

    Returns
    -------
    ndarray of shape (m,) + freqs.shape, complex128
    """
    q = np.mod(freqs, n)
    upper = q > n // 2                  # aliases of negative frequencies: conjugates
    out = spectrum[:, np.where(upper, n - q, q)]
    return np.where(upper, np.conj(out), out)


def _density_weights(mask: np.ndarray, sigma: float, threads: int = 1) -> np.ndarray:
    """Least-squares weights 1 / density^2 of the usable samples of each series (0 elsewhere).

    The density is the usable fraction under a centred Gaussian of ``sigma`` samples (circular),
    so samples in sparse stretches count as much as the dense ones they stand in for.

    Parameters
    ----------
    mask : ndarray of shape (m, n), bool
    sigma : float
    threads : int

    Returns
    -------
    ndarray of shape (m, n), float64
    """
    import scipy.fft  # here, not at the top: every pipeline start imports this module

    n = mask.shape[-1]
    lag = np.minimum(np.arange(n), n - np.arange(n))
    kernel = np.exp(-0.5 * (lag / sigma) ** 2)
    kernel /= kernel.sum()
    # Single precision is plenty for a density (>= kernel peak, ~0.01, at a usable sample).
    kernel_fft = scipy.fft.rfft(kernel.astype(np.float32))
    mask_fft = scipy.fft.rfft(mask.astype(np.float32), axis=-1, workers=threads)
    density = scipy.fft.irfft(mask_fft * kernel_fft, n, axis=-1, workers=threads)
    usable = mask & (density > 0)
    weights = np.zeros(mask.shape)
    weights[usable] = 1.0 / np.square(density[usable], dtype=np.float64)
    return weights


def weighted_fourier_fit(weights: np.ndarray, data: np.ndarray, freqs: np.ndarray,
                         threads: int = 1) -> np.ndarray:
    """Weighted least-squares fit of a real Fourier series to each row of ``data``.

    The model of row r is ``sum_k Re(c[r, k] exp(2 pi i freqs[k] t / n))`` (a cosine and a sine
    per frequency, no sine at 0 or n / 2), minimising ``sum_t weights (model - data)^2``. The
    normal equations are built from Fourier sums of ``weights`` and ``weights x data`` and solved
    by pseudo-inverse (minimum norm where a row has too few samples; zeros for an empty row).

    Parameters
    ----------
    weights : ndarray of shape (m, n), float64
        0 for samples not fitted.
    data : ndarray of shape (m, n), float32 or float64
        Finite everywhere (values where ``weights`` is 0 do not matter).
    freqs : ndarray of shape (K,), int
        Distinct frequencies in cycles per n samples, 0 <= freqs <= n // 2.
    threads : int

    Returns
    -------
    ndarray of shape (m, K), complex128
        c = a - i b for the model a cos + b sin of each frequency.
    """
    import scipy.fft

    n = data.shape[-1]
    freqs = np.asarray(freqs, dtype=np.int64)
    has_sine = (freqs != 0) & (2 * freqs != n)
    j, k = freqs[:, None], freqs[None, :]
    weights_fft = scipy.fft.rfft(weights, axis=-1, workers=threads)
    w_diff = _fourier_sums(weights_fft, n, j - k)         # (m, K, K)
    w_sum = _fourier_sums(weights_fft, n, j + k)
    # cos_j cos_k, sin_j sin_k and cos_j sin_k as sums of cos / sin of j -+ k; -Im is the sine.
    cc = 0.5 * (w_diff.real + w_sum.real)
    ss = 0.5 * (w_diff.real - w_sum.real)
    cs = 0.5 * (-w_sum.imag + w_diff.imag)
    weighted_data_fft = scipy.fft.rfft(weights * data, axis=-1, workers=threads)
    rhs_fft = _fourier_sums(weighted_data_fft, n, freqs)  # (m, K)
    sine = np.flatnonzero(has_sine)
    normal = np.block([[cc, cs[:, :, sine]],
                       [np.swapaxes(cs, 1, 2)[:, sine, :], ss[:, sine][:, :, sine]]])
    rhs = np.concatenate((rhs_fft.real, -rhs_fft.imag[:, sine]), axis=1)
    solution = np.einsum("mij,mj->mi", np.linalg.pinv(normal, rcond=1e-12, hermitian=True), rhs)
    coeffs = solution[:, :freqs.size].astype(np.complex128)
    coeffs[:, sine] -= 1j * solution[:, freqs.size:]
    return coeffs


def _synthesize(coeffs: np.ndarray, freqs: np.ndarray, n: int) -> np.ndarray:
    """Evaluate the Fourier series of :func:`weighted_fourier_fit` at t = 0..n-1.

    Returns
    -------
    ndarray of shape (m, n), float64
    """
    spectrum = np.zeros((coeffs.shape[0], n // 2 + 1), dtype=np.complex128)
    scale = np.where((freqs == 0) | (2 * freqs == n), n, n / 2)
    spectrum[:, freqs] = coeffs * scale
    return np.fft.irfft(spectrum, n, axis=-1)


# -- full frame ------------------------------------------------------------------------------------

def _fill_line_outliers(lines: np.ndarray, mask: np.ndarray, threads: int = 1) -> np.ndarray:
    """Usable samples beyond the line median +- LINE_CLIP robust sigma set to that median.

    Parameters
    ----------
    lines : ndarray of shape (m, n), float32
    mask : ndarray of shape (m, n), bool
    threads : int

    Returns
    -------
    ndarray of shape (m, n), float32
        0 where ``mask`` is False.
    """
    m = lines.shape[0]
    center = np.empty((m, 1), dtype=np.float32)
    _rowcol.masked_row_median(lines, mask.view(np.uint8), -np.inf, np.inf, 1, center, None,
                              threads)
    spread = np.empty((m, 1), dtype=np.float32)
    _rowcol.masked_row_median(np.abs(lines - center), mask.view(np.uint8), -np.inf, np.inf, 1,
                              spread, None, threads)
    center = np.nan_to_num(center)
    limit = np.float32(LINE_CLIP * _MAD_TO_SIGMA) * np.nan_to_num(spread)
    values = np.where(np.abs(lines - center) > limit, center, lines)
    values[~mask] = 0.0
    return values


def fit_full_frame(residual: np.ndarray, mask: np.ndarray, buff: bool = True, threads: int = 1
                   ) -> np.ndarray:
    """NSClean model of a full-frame background residual, line by line.

    Parameters
    ----------
    residual : ndarray of shape (nlines, n), float32
        Detector frame (:func:`to_detector_frame`): each row a fast-axis line. Finite where
        ``mask``.
    mask : ndarray of shape (nlines, n), bool
        Pixels to fit.
    buff : bool
        Smooth the model across lines (Gaussian sigma ``BUFF_SIGMA``), as the reference does.
    threads : int
        For the line medians and the FFTs.

    Returns
    -------
    ndarray of shape (nlines, n), float32
        The fitted noise; 0 on the ``EDGE_LINES`` lines at each edge before buffing.
    """
    nlines, n = residual.shape
    apodizer = lowpass_apodizer(n, FULL_FRAME_CUTOFF, FULL_FRAME_KILL_WIDTH)
    freqs = np.flatnonzero(apodizer > 0)
    inner = slice(EDGE_LINES, max(EDGE_LINES, nlines - EDGE_LINES))
    lines = np.ascontiguousarray(residual[inner], dtype=np.float32)
    usable = np.ascontiguousarray(mask[inner])
    data = _fill_line_outliers(lines, usable, threads)
    weights = _density_weights(usable, LINE_DENSITY_SIGMA, threads)
    coeffs = weighted_fourier_fit(weights, data, freqs, threads)
    model = np.zeros((nlines, n), dtype=np.float32)
    model[inner] = _synthesize(coeffs * apodizer[freqs], freqs, n)
    if buff:
        from scipy.ndimage import gaussian_filter1d

        model = gaussian_filter1d(model, BUFF_SIGMA, axis=0, mode="wrap")
    return model


# -- subarray --------------------------------------------------------------------------------------

def _exclude_outliers(residual: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask less samples beyond SUBARRAY_CLIP robust sigma of the image and their 4 neighbours.

    Parameters
    ----------
    residual : ndarray of shape (nlines, n), float32
    mask : ndarray of shape (nlines, n), bool

    Returns
    -------
    ndarray of shape (nlines, n), bool
    """
    values = residual[mask].astype(np.float64)
    center = np.median(values)
    sigma = _MAD_TO_SIGMA * np.median(np.abs(values - center))
    with np.errstate(invalid="ignore"):
        outlier = mask & (np.abs(residual - center) > SUBARRAY_CLIP * sigma)
    spread = outlier.copy()
    spread[1:] |= outlier[:-1]
    spread[:-1] |= outlier[1:]
    spread[:, 1:] |= outlier[:, :-1]
    spread[:, :-1] |= outlier[:, 1:]
    return mask & ~spread


def _sections(counts: np.ndarray, npix: int = SECTION_PIXELS) -> list[tuple[int, int]]:
    """Overlapping line ranges [start, stop) holding > ``npix`` usable pixels each.

    From the first to the last line with a usable pixel, each section extends until it holds more
    than ``npix`` usable pixels (to the last line when less than 1.5 ``npix`` remain), and the
    next starts half a section later.

    Parameters
    ----------
    counts : ndarray of shape (nlines,), int
        Usable pixels per line.
    """
    used = np.flatnonzero(counts)
    if used.size == 0:
        return []
    cumulative = np.concatenate(([0], np.cumsum(counts)))
    start, last = int(used[0]), int(used[-1])
    sections = []
    while True:
        stop = last + 1
        if cumulative[-1] - cumulative[start] > 1.5 * npix:
            first_over = int(np.searchsorted(cumulative, cumulative[start] + npix, side="right"))
            stop = min(max(first_over, start + 1), last + 1)
        sections.append((start, stop))
        if stop == last + 1:
            return sections
        start += max(int(np.round((stop - start) / 2)), 1)


def _fit_section(residual: np.ndarray, mask: np.ndarray, cutoffs) -> np.ndarray:
    """NSCleanSubarray model of one section, fitted as a time series of pixel reads.

    Parameters
    ----------
    residual : ndarray of shape (nlines, n), float32
    mask : ndarray of shape (nlines, n), bool
    cutoffs : 4 floats
        Apodizer frequencies (Hz), see :func:`band_apodizer`.

    Returns
    -------
    ndarray of shape (nlines, n), float64
    """
    nlines, n = residual.shape
    stride = n + LINE_OVERHEAD
    ticks = nlines * stride
    series = np.zeros((nlines, stride))
    usable = np.zeros((nlines, stride), dtype=bool)
    series[:, :n] = np.where(mask, residual, 0.0)
    usable[:, :n] = mask
    apodizer = band_apodizer(ticks, cutoffs)
    freqs = np.flatnonzero(apodizer > 0)
    sigma = 1.0 / (0.5 * (cutoffs[0] + cutoffs[1])) / PIXEL_TIME / 8
    weights = _density_weights(usable.reshape(1, ticks), sigma)
    coeffs = weighted_fourier_fit(weights, series.reshape(1, ticks), freqs)
    model = _synthesize(coeffs * apodizer[freqs], freqs, ticks)
    return model.reshape(nlines, stride)[:, :n]


def fit_subarray(residual: np.ndarray, mask: np.ndarray, cutoffs=SUBARRAY_CUTOFFS
                 ) -> np.ndarray | None:
    """NSClean model of a subarray background residual, in overlapping sections of lines.

    Parameters
    ----------
    residual : ndarray of shape (nlines, n), float32
        Detector frame: rows are fast-axis lines in read order.
    mask : ndarray of shape (nlines, n), bool
        Pixels to fit.
    cutoffs : 4 floats
        Apodizer frequencies (Hz), see :func:`band_apodizer`.

    Returns
    -------
    ndarray of shape (nlines, n), float32, or None
        The fitted noise (0 on lines outside every section); None when no usable pixel is left.
    """
    mask = _exclude_outliers(residual, mask) if mask.any() else mask
    sections = _sections(mask.sum(axis=1))
    if not sections:
        return None
    model = np.zeros(residual.shape)
    total = np.zeros((residual.shape[0], 1))
    for start, stop in sections:
        part = slice(start, stop)
        weight = 1.001 - np.abs(np.linspace(-1.0, 1.0, stop - start))[:, None]
        total[part] += weight
        if mask[part].mean() > MIN_SECTION_FILL:
            model[part] += weight * _fit_section(residual[part], mask[part], cutoffs)
        else:
            log.warning("clean_flicker_noise: too few background pixels for the fft fit around "
                        "line %d; not corrected there", start)
    return (model / np.where(total > 0, total, 1.0)).astype(np.float32)


def noise_model(residual: np.ndarray, mask: np.ndarray, detector: str,
                cutoffs=SUBARRAY_CUTOFFS, threads: int = 1) -> np.ndarray | None:
    """The NSClean noise model of a background residual image in DMS orientation.

    Parameters
    ----------
    residual : ndarray of shape (ny, nx), float32
        A group difference less its background level. Finite where ``mask``.
    mask : ndarray of shape (ny, nx), bool
        Background pixels to fit.
    detector : str
        'NRS1' or 'NRS2' (orientation, see :func:`to_detector_frame`).
    cutoffs : 4 floats
        Subarray apodizer frequencies (Hz).
    threads : int
        For the full-frame fit.

    Returns
    -------
    ndarray of shape (ny, nx), float32, or None
        The noise to subtract; None when nothing can be fitted.
    """
    if not mask.any():
        return None
    frame_residual = to_detector_frame(residual, detector)
    frame_mask = to_detector_frame(mask, detector)
    if residual.shape == FULL_FRAME_SHAPE:
        model = fit_full_frame(frame_residual, frame_mask, threads=threads)
    else:
        model = fit_subarray(frame_residual, frame_mask, cutoffs)
    return None if model is None else np.ascontiguousarray(from_detector_frame(model, detector))
