"""clean_flicker_noise: remove 1/f (flicker) noise stripes from ramps.

Following the reference pipeline (skipped by default, as there):

1. A draft rate per integration (mean of the usable group differences: no DO_NOT_USE or SATURATED
   group, no JUMP_DET in the later group) and from it a scene mask: finite, non-zero pixels whose
   rate is within [median - 3 sigma, median + ``n_sigma`` sigma] of the 3-sigma clipped
   statistics, or of a Gaussian fitted to their histogram (``fit_histogram``); an optional user
   mask, MIRI non-science pixels.
2. For each pair of consecutive groups, the difference image (group j+1 - group j) is fitted with
   the mask less its DO_NOT_USE and JUMP_DET pixels: a background level (``background_method``
   'median': clipped with the lower half of the value distribution, as the reference does;
   'model': a smooth 2-D background from photutils ``Background2D`` on the same pixels), more
   signal clipped at ``n_sigma`` (:func:`fit_background`), then the noise of the residual:

   - ``fit_method='median'``: the median of the remaining pixels along each detector row of the
     fast readout axis (or along each column for MIRI, whose flicker is vertical), optionally per
     amplifier (``fit_by_channel``, full-frame near-IR only): one stripe value per line;
   - ``fit_method='fft'`` (NSClean, NIRSpec spectroscopic exposure types only; the step is
     skipped for others, and ``fit_by_channel`` is ignored, as in the reference): a weighted
     least-squares fit of low-frequency Fourier components, per line for full frames and over
     the read-time series of sections of lines for subarrays (:mod:`._nsclean`): a full image.
3. The noise is accumulated over groups and subtracted: group j+1 loses the sum of the noise of
   differences 0..j (group 0 is unchanged), which equals the reference's "cleaned difference
   added to the cleaned previous group".

The per-pixel medians run in a compiled kernel; the global statistics (clipping thresholds and the
background level) are computed on an evenly strided sample of at most 2**16 pixels of each image.

``save_mask``, ``save_background`` and ``save_noise`` write the reference's diagnostic products
``_mask`` (the scene mask: one image, or one per integration without ``single_mask``),
``_flicker_bkg`` (each difference's fitted background, in the later group; in flat-divided
units when a flat is used) and ``_flicker_noise`` (output minus input ramp).

Differences from the reference: the draft rate is a simple difference mean, not a ramp fit; with
``single_mask`` the mask comes from the mean rate of the integrations in each block the driver
streams (all integrations when the step runs on a whole exposure); for 'fft' a difference whose
fit has no usable pixel left is not corrected (the reference skips the whole step), and the fit
itself differs where the reference has defects (see :mod:`._nsclean`). Not implemented (clear
ConfigError): ``background_method='median_image'`` (a TSO option of the newest reference, which
scales a median over integrations by white-light or aperture fluxes from the stage-2/3 extraction
and photometry steps) and masking NIRSpec science regions (needs the WCS).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.stats import sigma_clipped_stats

from .. import dq as dqflags
from .._ext import _rowcol
from ..errors import ConfigError
from ..logs import get_logger
from . import _nsclean
from .base import (
    NOT_APPLICABLE,
    RampBlock,
    RampStep,
    StepParams,
    exposure_shape,
    intermediate_product,
    output_name,
)

__all__ = ["STATS_SAMPLE", "NSCLEAN_EXP_TYPES", "clip_to_background",
           "draft_rate", "scene_mask", "model_background", "BackgroundFit", "fit_background",
           "fit_stripes", "line_medians", "apply_stripes", "CleanFlickerNoiseParams",
           "CleanFlickerNoiseStep"]

log = get_logger("clean_flicker_noise")

#: At most this many pixels of an image enter its global statistics.
STATS_SAMPLE = 2 ** 16
#: Exposure types ``fit_method='fft'`` (NSClean, NIRSpec detector geometry) applies to; the step
#: is skipped for others, as in the reference.
NSCLEAN_EXP_TYPES = ("NRS_MSASPEC", "NRS_IFU", "NRS_FIXEDSLIT", "NRS_BRIGHTOBJ")
_UNUSABLE_GROUP = dqflags.DO_NOT_USE | dqflags.JUMP_DET


# -- statistics ------------------------------------------------------------------------------------

def _sample(values: np.ndarray, mask: np.ndarray, cap: int | None = STATS_SAMPLE) -> np.ndarray:
    """The masked values of an evenly strided (odd stride) sample of at most ~``cap`` pixels
    (all of them when ``cap`` is None)."""
    flat_v = values.reshape(-1)
    flat_m = mask.reshape(-1)
    step = 1 if cap is None else max(1, -(-flat_v.size // cap))
    if step > 1 and step % 2 == 0:
        step += 1               # odd: do not alias with even/odd columns
    v = flat_v[::step]
    m = flat_m[::step]
    return v[m].astype(np.float64)


def clip_to_background(sample: np.ndarray, sigma_lower: float, sigma_upper: float,
                       lower_half_only: bool = False, fit_histogram: bool = False
                       ) -> tuple[float, float]:
    """Value limits separating background from signal and bad values.

    Parameters
    ----------
    sample : ndarray, 1-D, float64
        Background-candidate values.
    sigma_lower, sigma_upper : float
        Limits below / above the centre, in standard deviations.
    lower_half_only : bool
        Derive centre and sigma from the values at or below the first centre, mirrored about it
        (robust to a long upper tail of faint sources).
    fit_histogram : bool
        Take centre and sigma from a Gaussian fitted to the histogram of the values (2000 bins
        over the clipped centre +- 4 sigma; the clipped mean, not median, as the first centre),
        as the reference's ``fit_histogram``; the clipped values if the fit fails.

    Returns
    -------
    (lo, hi) : floats
        Values outside [lo, hi] are not background. (-inf, inf) when ``sample`` is empty.
    """
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return -np.inf, np.inf
    mean, center, sigma = sigma_clipped_stats(sample, sigma=3.0)
    center = mean if fit_histogram else center
    values = sample
    if lower_half_only:
        low = sample[sample <= center]
        values = np.concatenate((low - center, center - low)) + center
        mean, center, sigma = sigma_clipped_stats(values, sigma=3.0)
        center = mean if fit_histogram else center
    if not np.isfinite(center):
        return -np.inf, np.inf
    if fit_histogram and sigma > 0:
        center, sigma = _histogram_peak(values, center, sigma)
    return center - sigma_lower * sigma, center + sigma_upper * sigma


def _histogram_peak(values: np.ndarray, center: float, sigma: float) -> tuple[float, float]:
    """Centre and width of a Gaussian fitted to the histogram of ``values`` near ``center``."""
    from scipy.optimize import curve_fit

    hist, edges = np.histogram(values, bins=2000, range=(center - 4 * sigma, center + 4 * sigma))
    mids = 0.5 * (edges[1:] + edges[:-1])
    peak = int(np.argmax(hist))

    def gaussian(x, amp, mu, width):
        return amp * np.exp(-0.5 * ((x - mu) / width) ** 2)

    try:
        (_, mu, width), _ = curve_fit(
            gaussian, mids, hist, p0=(hist[peak], mids[peak], sigma),
            bounds=([0, mids[0], 0], [np.inf, mids[-1], mids[-1] - mids[0]]))
    except (RuntimeError, ValueError):
        log.error("clean_flicker_noise: Gaussian fit to the histogram failed; using the "
                  "clipped centre and sigma")
        return center, sigma
    return float(mu), float(width)


# -- draft rate and scene mask ---------------------------------------------------------------------

def draft_rate(data: np.ndarray, groupdq: np.ndarray) -> np.ndarray:
    """A quick rate estimate for scene masking: the mean usable group difference.

    Parameters
    ----------
    data : ndarray of shape (ngroups, ny, nx), float32
    groupdq : ndarray of shape (ngroups, ny, nx), uint8
        Differences touching a DO_NOT_USE or SATURATED group, or ending in a JUMP_DET group, are
        not used.

    Returns
    -------
    ndarray of shape (ny, nx), float32
        DN per group; NaN where no difference is usable (the single group's value for one-group
        ramps).
    """
    ng = data.shape[0]
    if ng == 1:
        return data[0].astype(np.float32)
    bad = (groupdq & (dqflags.DO_NOT_USE | dqflags.SATURATED)) != 0
    total = np.zeros(data.shape[1:], dtype=np.float32)
    count = np.zeros(data.shape[1:], dtype=np.int16)
    diff = np.empty(data.shape[1:], dtype=np.float32)
    for g in range(ng - 1):
        ok = ~(bad[g] | bad[g + 1] | ((groupdq[g + 1] & dqflags.JUMP_DET) != 0))
        np.subtract(data[g + 1], data[g], out=diff)
        diff[~ok] = 0.0
        total += diff
        count += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).astype(np.float32)


def scene_mask(rate: np.ndarray, n_sigma: float = 2.0, base: np.ndarray | None = None,
               fit_histogram: bool = False, sample: int | None = STATS_SAMPLE) -> np.ndarray:
    """Background pixels of a rate image (True = background, usable for the noise fit).

    Parameters
    ----------
    rate : ndarray of shape (ny, nx)
    n_sigma : float
        Pixels above the clipped median by more than ``n_sigma`` sigma are signal; values more
        than 3 sigma below are bad. 0 disables the clipping.
    base : ndarray of shape (ny, nx), bool, optional
        Pixels already excluded (False) before clipping.
    fit_histogram : bool
        Clip limits from a Gaussian fit to the histogram (see :func:`clip_to_background`).
    sample : int or None
        The clipping statistics use an evenly strided sample of about this many pixels; None:
        every pixel (the reference pipeline's statistics exactly, at ~0.4 s per full frame).

    Returns
    -------
    ndarray of shape (ny, nx), bool
    """
    mask = np.isfinite(rate) & (rate != 0)
    if base is not None:
        mask &= base
    if n_sigma > 0 and mask.any():
        lo, hi = clip_to_background(_sample(rate, mask, sample), 3.0, n_sigma,
                                    fit_histogram=fit_histogram)
        mask &= (rate >= lo) & (rate <= hi)
    return mask


# -- the noise fit ---------------------------------------------------------------------------------

def model_background(image: np.ndarray, mask: np.ndarray, box_size=None):
    """Low-resolution background of an image (photutils ``Background2D``), as the reference's
    ``background_method='model'``: medians of sigma-clipped (3 sigma, 5 passes) boxes of the
    background pixels, 5x5 median-filtered, interpolated back to every pixel.

    Parameters
    ----------
    image : ndarray of shape (ny, nx), float32
    mask : ndarray of shape (ny, nx), bool
        Background pixels (True) the boxes are made of.
    box_size : int or (int, int), optional
        Box shape; default per axis the largest size up to 32 that divides the image evenly.

    Returns
    -------
    ndarray of shape (ny, nx), float32, or float
        The background; the median of the background pixels if the model cannot be made (a
        logged error, as in the reference).
    """
    from astropy.stats import SigmaClip
    from astropy.utils.exceptions import AstropyUserWarning
    from photutils.background import Background2D, MedianBackground

    if box_size is None:
        box_size = [max(b for b in range(1, 33) if n % b == 0) for n in image.shape]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)
            bkg = Background2D(image, box_size, mask=~(mask & np.isfinite(image)),
                               filter_size=(5, 5), sigma_clip=SigmaClip(sigma=3.0, maxiters=5),
                               bkg_estimator=MedianBackground())
        return np.asarray(bkg.background, dtype=np.float32)
    except ValueError as exc:
        log.error("clean_flicker_noise: background model failed (%s); using the median", exc)
        return float(np.nanmedian(image[mask])) if mask.any() else 0.0


@dataclass
class BackgroundFit:
    """What the noise fits of one image use: the image they fit and its background pixels.

    Attributes
    ----------
    target : ndarray of shape (ny, nx), float32
        The image, less its 2-D background model for ``background_method='model'``.
    level : float
        Background level of ``target`` (0 for 'model' and None).
    mask : ndarray of shape (ny, nx), bool
        Background candidates; those with ``lo <= target <= hi`` are fitted.
    lo, hi : float
        Signal clip limits, in the units of ``target``.
    model : ndarray of shape (ny, nx), float32, optional
        The 2-D background removed from the image for ``background_method='model'``.
    """

    target: np.ndarray
    level: float
    mask: np.ndarray
    lo: float
    hi: float
    model: np.ndarray | None = None

    @property
    def background(self) -> np.ndarray | float:
        """The background fitted and removed before the noise fit (image or level)."""
        return self.model if self.model is not None else self.level

    def residual(self) -> tuple[np.ndarray, np.ndarray]:
        """The background-subtracted image, float32, and its fitted pixels, bool, (ny, nx)."""
        residual = self.target - np.float32(self.level)
        with np.errstate(invalid="ignore"):
            fitted = self.mask & (self.target >= self.lo) & (self.target <= self.hi)
        residual[~fitted] = 0.0          # no NaN into the Fourier sums
        return residual, fitted


def fit_background(image: np.ndarray, mask: np.ndarray, background_method: str | None = "median",
                   n_sigma: float = 2.0, box_size=None) -> BackgroundFit | None:
    """Background level and signal clip limits of one image, before its noise fit.

    Parameters
    ----------
    image : ndarray of shape (ny, nx), float32
        A group difference (divided by the flat, if one is used).
    mask : ndarray of shape (ny, nx), bool
        Background pixels usable for the fit.
    background_method : {'median', 'model', None}
        'median': the median background level, signal clipped first (3 sigma of the lower half
        of the values); 'model': the same clip, then a smooth 2-D background
        (:func:`model_background`), for scenes whose background varies across the lines; None:
        no background level and no clip.
    n_sigma : float
        Clip level for signal in the background-subtracted image (0: none).
    box_size : int or (int, int), optional
        Box shape of the 'model' background.

    Returns
    -------
    BackgroundFit or None
        None when the image has no background pixel.
    """
    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    lo, hi = -np.inf, np.inf
    background = 0.0
    if background_method is not None:  # signal clipped first, for either background
        sample = _sample(image, mask)
        lo, hi = clip_to_background(sample, 3.0, 3.0, lower_half_only=True)
    if background_method == "model":
        # The fit runs on the image less its model, of the pixels that survived the clip.
        mask = mask & (image >= lo) & (image <= hi)
        if not mask.any():
            return None
        model = model_background(image, mask, box_size)
        image = image - model
        lo, hi = -np.inf, np.inf
        if n_sigma > 0:
            lo, hi = clip_to_background(_sample(image, mask), n_sigma, n_sigma,
                                        lower_half_only=True)
    elif background_method is not None:
        kept = sample[(sample >= lo) & (sample <= hi)]
        background = float(np.median(kept)) if kept.size else 0.0
        if n_sigma > 0:
            lo2, hi2 = clip_to_background(kept - background, n_sigma, n_sigma,
                                          lower_half_only=True)
            lo, hi = max(lo, lo2 + background), min(hi, hi2 + background)
    return BackgroundFit(image, background, mask, lo, hi,
                         model if background_method == "model" else None)


def fit_stripes(image: np.ndarray, mask: np.ndarray, axis: int, nseg: int = 1,
                background_method: str | None = "median", n_sigma: float = 2.0,
                nthreads: int = 1, box_size=None) -> np.ndarray | None:
    """The 1/f stripes of one image: median along ``axis`` of the background pixels.

    Parameters
    ----------
    image : ndarray of shape (ny, nx), float32
        A group difference (divided by the flat, if one is used).
    mask : ndarray of shape (ny, nx), bool
        Background pixels usable for the fit.
    axis : int
        Numpy axis the medians run along (1: one value per row, the near-IR fast axis along x;
        0: one value per column).
    nseg : int
        Independent segments along ``axis`` (4 to fit amplifiers separately).
    background_method, n_sigma, box_size
        As in :func:`fit_background`; the background level is removed before the medians and
        restored after.
    nthreads : int

    Returns
    -------
    ndarray of shape (nlines, nseg), float32, or None
        Stripe value per line (row for ``axis`` 1, column for 0) and segment, 0 where a segment
        has no background pixel; None when the image has no background pixel at all.
    """
    fit = fit_background(image, mask, background_method, n_sigma, box_size)
    return None if fit is None else line_medians(fit, axis, nseg, nthreads)


def line_medians(fit: BackgroundFit, axis: int, nseg: int = 1, nthreads: int = 1) -> np.ndarray:
    """The stripes of :func:`fit_stripes` from an image's background fit."""
    view = fit.target if axis == 1 else fit.target.T
    mview = fit.mask.view(np.uint8) if axis == 1 else fit.mask.view(np.uint8).T
    out = np.empty((view.shape[0], nseg), dtype=np.float32)
    _rowcol.masked_row_median(view, mview, fit.lo, fit.hi, nseg, out, None, nthreads)
    stripes = out - np.float32(fit.level)
    stripes[np.isnan(out)] = 0.0
    return stripes


def apply_stripes(images: np.ndarray, stripes: np.ndarray, axis: int,
                  flat: np.ndarray | None = None, nthreads: int = 1) -> None:
    """Subtract per-line (and per-segment) stripe values from images, in place.

    Parameters
    ----------
    images : ndarray of shape (m, ny, nx), float32, C-contiguous
    stripes : ndarray of shape (m, nlines, nseg), float32
        One value per line (row for ``axis`` 1, column for 0) and equal segment along it.
    axis : int
        As in :func:`fit_stripes`.
    flat : ndarray of shape (ny, nx), optional
        The stripes were fitted on flat-divided data: subtract stripes x flat.
    nthreads : int
    """
    m, ny, nx = images.shape
    nseg = stripes.shape[2]
    if flat is not None:
        for i in range(m):
            line = np.repeat(stripes[i], (nx if axis == 1 else ny) // nseg, axis=1)
            images[i] -= (line if axis == 1 else line.T) * flat
        return
    if nseg == 1:
        vec = np.ascontiguousarray(stripes[:, :, 0])
        if axis == 1:
            _rowcol.subtract_outer(images, vec, None, nthreads)
        else:
            _rowcol.subtract_outer(images, None, vec, nthreads)
        return
    if axis == 1:
        blocks = np.reshape(images, (m, ny, nseg, nx // nseg), copy=False)
        blocks -= stripes[:, :, :, None]
    else:
        blocks = np.reshape(images, (m, nseg, ny // nseg, nx), copy=False)
        blocks -= np.swapaxes(stripes, 1, 2)[:, :, None, :]


# -- the step --------------------------------------------------------------------------------------

@dataclass
class CleanFlickerNoiseParams(StepParams):
    skip: bool = True
    fit_method: str = "median"
    fit_by_channel: bool = False
    background_method: str | None = "median"
    background_box_size: str | None = None   # 'model' boxes: "ny,nx" or "n" (default: <= 32)
    mask_science_regions: bool = False
    apply_flat_field: bool = False
    n_sigma: float = 2.0
    fit_histogram: bool = False
    single_mask: bool = True
    user_mask: str | None = None
    #: Write the scene mask (``_mask``), the fitted background (``_flicker_bkg``) and what
    #: the step changed (``_flicker_noise``).
    save_mask: bool = False
    save_background: bool = False
    save_noise: bool = False


def _box_size(value) -> tuple[int, int] | None:
    """``background_box_size`` as (ny, nx): from "ny,nx", "n" or a sequence; None stays None."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    parts = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    try:
        sizes = [int(v) for v in parts]
    except (TypeError, ValueError):
        sizes = []
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise ConfigError(f"step clean_flicker_noise: background_box_size must be one or two "
                          f"positive integers, got {value!r}")
    return sizes[0], sizes[1]


@dataclass
class FlickerPlan:
    status: str = "COMPLETE"
    reason: str = ""
    fit_method: str = "median"
    detector: str = ""
    cutoffs: tuple[float, float, float, float] = _nsclean.SUBARRAY_CUTOFFS
    axis: int = 1
    nseg: int = 1
    background_method: str | None = "median"
    box_size: tuple[int, int] | None = None
    flat: np.ndarray | None = None
    user_mask: np.ndarray | None = None
    miri_science_only: bool = False
    cache: dict = field(default_factory=dict)
    # Diagnostic products (save_mask / save_background / save_noise), filled block by block.
    mask: np.ndarray | None = None
    background: np.ndarray | None = None
    noise: np.ndarray | None = None


class CleanFlickerNoiseStep(RampStep):
    """Fit and remove 1/f (flicker) noise stripes from each group difference."""

    name = "clean_flicker_noise"
    class_name = "CleanFlickerNoiseStep"
    cal_step = "clean_flicker_noise"
    reference_types = ("flat",)
    missing_reference_level = logging.WARNING  # asked to flat-field, fitting without a flat
    Params = CleanFlickerNoiseParams

    def required_references(self) -> tuple[str, ...]:
        return ()

    def used_references(self, model) -> tuple[str, ...]:
        return ("flat",) if self.params.apply_flat_field else ()

    def prepare(self, model, refs) -> FlickerPlan:
        p = self.params
        meta = model.meta
        if p.fit_method not in ("median", "fft"):
            raise ConfigError(f"step clean_flicker_noise: fit_method must be 'median' or 'fft', "
                              f"got {p.fit_method!r}")
        method = p.background_method
        if method is not None and str(method).lower() == "none":
            method = None
        if method == "median_image":
            raise ConfigError("step clean_flicker_noise: background_method='median_image' is not "
                              "implemented in jwpipe: the reference pipeline runs stage-2 steps "
                              "for it (assign_wcs on the draft rateints; background, extract_1d "
                              "and white_light, or tso_photometry, to scale each integration), "
                              "which jwpipe does not have yet; use 'median', 'model' or None")
        if method not in (None, "median", "model"):
            raise ConfigError(f"step clean_flicker_noise: background_method must be 'median', "
                              f"'model' or None, got {method!r}")
        exp_type = str(meta.get("exposure.type") or "").upper()
        instrument = str(meta.get("instrument.name") or "").upper()
        miri = instrument == "MIRI" or exp_type.startswith("MIR")
        plan = FlickerPlan(background_method=method, box_size=_box_size(p.background_box_size),
                           fit_method=p.fit_method)
        if miri and exp_type != "MIR_IMAGE":
            plan.status, plan.reason = "SKIPPED", f"EXP_TYPE {exp_type} is not supported"
            return plan
        if p.fit_method == "fft" and not self._plan_fft(plan, meta, exp_type):
            return plan
        if p.mask_science_regions and exp_type.startswith("NRS"):
            raise ConfigError("step clean_flicker_noise: mask_science_regions for NIRSpec needs "
                              "the WCS slit footprints, not implemented in jwpipe yet")
        plan.miri_science_only = miri and p.mask_science_regions
        if miri:
            plan.axis = 0                       # MIRI flicker is vertical: one value per column
        else:
            slowaxis = meta.get("subarray.slowaxis")
            if slowaxis is None:
                raise ConfigError(f"clean_flicker_noise: {model.path or 'input'} lacks SLOWAXIS "
                                  "(meta.subarray.slowaxis)")
            plan.axis = abs(int(slowaxis)) - 1
        if p.fit_by_channel and p.fit_method == "fft":
            log.info("clean_flicker_noise: fit_by_channel is ignored for fit_method='fft'")
        elif p.fit_by_channel:
            full = str(meta.get("subarray.name") or "").upper() == "FULL"
            shape = exposure_shape(model)
            length = shape[-1] if plan.axis == 1 else shape[-2]
            if miri or not full or length != 2048:
                log.warning("clean_flicker_noise: fit_by_channel applies to full-frame near-IR "
                            "data only; fitting whole lines")
            else:
                plan.nseg = 4
        if refs.get("flat", NOT_APPLICABLE) != NOT_APPLICABLE:
            plan.flat = self._read_flat(refs["flat"], model)
        if p.user_mask:
            plan.user_mask = self._read_user_mask(p.user_mask, model, plan)
        if plan.status != "SKIPPED" and (p.save_background or p.save_noise):
            from ..datamodels.spill import allocate

            shape = exposure_shape(model)       # whole-exposure products, filled block by block
            if p.save_background:
                plan.background = allocate(shape, np.float32, fill=0.0, spill_dir=p.output_dir)
            if p.save_noise:
                plan.noise = allocate(shape, np.float32, fill=0.0, spill_dir=p.output_dir)
        return plan

    @staticmethod
    def _plan_fft(plan: FlickerPlan, meta, exp_type: str) -> bool:
        """Set the NSClean options; False (step skipped) for a non-NIRSpec exposure type."""
        if exp_type not in NSCLEAN_EXP_TYPES:
            plan.status = "SKIPPED"
            plan.reason = f"fit_method 'fft' cannot be applied to EXP_TYPE {exp_type or '?'}"
            return False
        plan.detector = str(meta.get("instrument.detector") or "").upper()
        if str(meta.get("subarray.name") or "").upper() == "ALLSLITS":
            plan.cutoffs = _nsclean.ALLSLITS_CUTOFFS    # less aggressive: slits fill the frame
        return True

    def _read_flat(self, path, model) -> np.ndarray:
        from ..references import cut_to_subarray, open_reference

        ref = open_reference(path, "flat")
        flat = np.array(cut_to_subarray(ref.lazy("data"), ref.meta, model.meta, name=str(path)),
                        dtype=np.float32)
        ref.close()
        bad = ~np.isfinite(flat) | (flat == 0)
        if bad.all():
            log.warning("clean_flicker_noise: %s has no usable flat values; not used", path)
            return None
        if bad.any():
            flat[bad] = np.median(flat[~bad])
        return flat

    def _read_user_mask(self, path, model, plan) -> np.ndarray | None:
        from .. import datamodels

        mask = np.asarray(datamodels.open(path).data).astype(bool)
        nints, _, ny, nx = exposure_shape(model)
        if mask.shape[-2:] != (ny, nx) or (mask.ndim == 3 and mask.shape[0] != nints) or \
                mask.ndim not in (2, 3):
            plan.status = "SKIPPED"
            plan.reason = f"user mask {path} of shape {mask.shape} does not match the data"
            return None
        return mask

    def process_block(self, block: RampBlock, plan: FlickerPlan) -> None:
        if plan.status == "SKIPPED":
            return
        p = self.params
        data, gdq = block.data, block.groupdq
        nb, ng = data.shape[:2]
        if ng < 2:
            return
        base = np.ones(data.shape[2:], dtype=bool)
        if plan.miri_science_only:
            base &= (block.pixeldq & (dqflags.DO_NOT_USE | dqflags.NON_SCIENCE)) == 0
        masks = []
        if plan.user_mask is not None and plan.user_mask.ndim == 2:
            masks = [plan.user_mask & base] * nb       # one mask shared by the integrations
        elif plan.user_mask is not None:
            masks = [plan.user_mask[block.int_start + k] & base for k in range(nb)]
        else:
            rates = [draft_rate(data[k], gdq[k]) for k in range(nb)]
            if plan.flat is not None:
                rates = [r / plan.flat for r in rates]
            if p.single_mask:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN pixels stay NaN
                    combined = np.nanmean(np.stack(rates), axis=0) if nb > 1 else rates[0]
                one = scene_mask(combined, p.n_sigma, base, p.fit_histogram)
                masks = [one] * nb
            else:
                masks = [scene_mask(r, p.n_sigma, base, p.fit_histogram) for r in rates]
        if p.save_mask:
            self._keep_masks(plan, masks, block)
        original = data.copy() if plan.noise is not None else None
        for k in range(nb):
            background = None
            if plan.background is not None:
                background = plan.background[block.int_start + k]
            self._clean_integration(data[k], gdq[k], masks[k], plan, background)
        if original is not None:
            np.subtract(data, original, out=plan.noise[block.int_start:block.int_stop])

    def _keep_masks(self, plan: FlickerPlan, masks: list, block: RampBlock) -> None:
        """The scene masks for ``save_mask``: one image (the blocks' masks ANDed, as the
        reference reduces per-integration masks) when every integration shares one, else a
        cube of one per integration."""
        if all(m is masks[0] for m in masks):
            plan.mask = masks[0].copy() if plan.mask is None else plan.mask & masks[0]
            return
        if plan.mask is None:
            from ..datamodels.spill import allocate

            plan.mask = allocate((block.nints,) + masks[0].shape, np.bool_, fill=False,
                                 spill_dir=self.params.output_dir)
        for k, mask in enumerate(masks):
            plan.mask[block.int_start + k] = mask

    def _clean_integration(self, ramp, gdq, scene, plan, background=None) -> None:
        """Clean one integration's ramp in place; ``background`` (ngroups, ny, nx), if given,
        receives each difference's fitted background (in group j+1, as the reference)."""
        if plan.fit_method == "fft":
            self._clean_integration_fft(ramp, gdq, scene, plan, background)
            return
        p = self.params
        ng, ny, nx = ramp.shape
        nlines = ny if plan.axis == 1 else nx
        diff = np.empty((ny, nx), dtype=np.float32)
        cumulative = np.zeros((nlines, plan.nseg), dtype=np.float32)
        corrections = np.zeros((ng - 1, nlines, plan.nseg), dtype=np.float32)
        for j in range(ng - 1):
            np.subtract(ramp[j + 1], ramp[j], out=diff)
            if plan.flat is not None:
                diff /= plan.flat
            mask = scene & ((gdq[j + 1] & _UNUSABLE_GROUP) == 0)
            fit = fit_background(diff, mask, plan.background_method, p.n_sigma, plan.box_size)
            stripes = None
            if fit is not None:
                stripes = line_medians(fit, plan.axis, plan.nseg, self.threads)
                if background is not None:
                    background[j + 1] = fit.background
            if stripes is None:
                log.warning("clean_flicker_noise: no background pixels in a group difference; "
                            "left uncorrected")
            else:
                cumulative += stripes
            corrections[j] = cumulative
        apply_stripes(ramp[1:], corrections, plan.axis, plan.flat, self.threads)

    def _clean_integration_fft(self, ramp, gdq, scene, plan, background=None) -> None:
        """NSClean each group difference; group j+1 loses the noise of differences 0..j.

        The noise of a difference is a full image, so the running sum is one image and each group
        is corrected as soon as its difference is fitted (its original kept for the next one).
        """
        p = self.params
        cumulative = np.zeros(ramp.shape[1:], dtype=np.float32)
        previous = ramp[0].copy()
        for j in range(ramp.shape[0] - 1):
            current = ramp[j + 1].copy()
            diff = current - previous
            if plan.flat is not None:
                diff /= plan.flat
            mask = scene & ((gdq[j + 1] & _UNUSABLE_GROUP) == 0)
            noise = None
            fit = fit_background(diff, mask, plan.background_method, p.n_sigma, plan.box_size)
            if fit is not None:
                if background is not None:
                    background[j + 1] = fit.background
                residual, fitted = fit.residual()
                noise = _nsclean.noise_model(residual, fitted, plan.detector, plan.cutoffs,
                                             self.threads)
            if noise is None:
                log.warning("clean_flicker_noise: no background pixels in a group difference; "
                            "left uncorrected")
            else:
                cumulative += noise if plan.flat is None else noise * plan.flat
            ramp[j + 1] -= cumulative
            previous = current

    def finish(self, model, plan: FlickerPlan) -> None:
        if plan.reason:
            log.warning("clean_flicker_noise skipped: %s", plan.reason)
        self.record_status(model, plan.status)
        if plan.status != "COMPLETE":
            return
        source = model.path or Path(model.meta.get("filename") or "jwpipe_exposure.fits")
        for suffix, data in (("mask", plan.mask), ("flicker_bkg", plan.background),
                             ("flicker_noise", plan.noise)):
            if data is not None:
                path = intermediate_product(model, data).save(
                    output_name(source, suffix, self.params.output_dir or "."))
                log.info("clean_flicker_noise: wrote %s", path)
