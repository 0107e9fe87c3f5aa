"""Ramp fitting: slopes from up-the-ramp groups (ordinary least squares, optimal weighting).

Array-level API, no file I/O. The algorithm is the reference pipeline's OLS_C fit (stcal >= 1.19),
reproduced to the bit on the reference outputs with ``power_snr="endpoints"`` (see
``tests/test_ramp_fit_kernel.py``); the default differs in one place, on purpose: how the weighting
power is picked (below).

- A group is usable when its GROUPDQ is 0. Segments are runs of usable groups; a group flagged
  exactly JUMP_DET right before a run is the run's first group (the jump happened before it).
  DO_NOT_USE groups are left out, SATURATED groups end the ramp. Length-1 segments are dropped
  when a longer one exists (if all have length 1, only the first is kept).
- A segment of n >= 3 groups is fitted with the Fixsen et al. (2000) weights |(k - mid)/mid|^P,
  where P in {0, 0.4, 1, 3, 6, 10} grows with the segment's signal-to-noise ratio
  ``S / sqrt(RN^2 + S gain)`` (thresholds 5, 10, 20, 50, 100). The reference takes the signal S
  from the segment's end points (last minus first group, ``power_snr="endpoints"``); that makes
  the slope a non-linear function of the data, biased high where a ramp's S/N is near a
  threshold: a ramp that fluctuates high crosses to a more end-weighted P and keeps its high
  end-to-end value, one that fluctuates low does not (on 10-group ramps +2.7e-3 to +4.5e-3
  relative at S/N 3-10 and +1.2e-3 at 20; on 5-group ramps +2.9e-3 at S/N 4: invisible in one
  integration, 0.6 sigma of the exposure ERR after 2000). The default, ``power_snr="stepwise"``,
  starts at P = 0 and goes up one power while the S/N of the slope fitted with the current power
  (``S = slope * (n - 1)``) reaches the next threshold. Near each threshold that slope is close
  to the best linear estimate, hence nearly uncorrelated with how far the next power's fit lies
  from it, so the choice adds no measurable bias (|bias| < 3e-4 on the same simulated ramps,
  within 2.4 sigma of 0). Variances are unchanged; slopes change only where the two choices
  differ, by a fraction of their noise (see ``tests/test_ramp_fit_kernel.py``). 2 groups give
  their difference over TGROUP; 1 group its value over TGROUP (over (NFRAMES+1)*TFRAME/2 when
  group 0 is the only good group, over TFRAME for a ZEROFRAME rescue; both only with
  ``suppress_one_group=False``).
- Read noise: the READNOISE reference holds the CDS (two-read difference) noise in DN. The formulas
  use the noise of one group in electrons, ``RN = readnoise * gain / sqrt(2 * nframes)``:
  var_R = 12 RN^2 / ((n^3 - n) TGROUP^2 gain^2) for n >= 3 (n = 2 for 1- and 2-group segments) and
  var_P = (median_rate + dark) / (TGROUP gain (n - 1)) (dark alone when the median rate is <= 0).
- The integration slope is the 1/var_R-weighted mean of its segment slopes; the exposure slope the
  1/var_R-weighted mean over all segments of all integrations. VAR_RNOISE and VAR_POISSON combine as
  1/sum(1/var); ERR = sqrt(VAR_POISSON + VAR_RNOISE) for the exposure and
  sqrt(1/sum 1/(var_P + var_R)) per integration. Variances >= 1e6 are reported as 0.
- CHARGELOSS groups (flagged CHARGELOSS|DO_NOT_USE) are excluded from the slope but put back in for
  VAR_RNOISE.
- DQ: PIXELDQ, plus JUMP_DET if any group had a jump, SATURATED if any group saturated (the slope of
  a partly saturated ramp stays valid; stcal >= 1.20), DO_NOT_USE when nothing could be fitted
  (every group DO_NOT_USE or SATURATED, group 0 saturated, or no segment at all, as for a ramp
  whose one good group was suppressed, e.g. [0, JUMP_DET, SATURATED, ...]) or the gain is
  unusable (then also NO_GAIN_VALUE). The one deliberate DQ difference from the reference: when
  group 0 itself is flagged (DO_NOT_USE from MIRI firstframe, or JUMP_DET) and no other group is
  left to fit (e.g. [DO_NOT_USE, JUMP_DET, SATURATED, ...]), the pixel-integration is
  DO_NOT_USE here; the reference gives it slope 0 with zero variances and no DO_NOT_USE, a
  perfect-looking measurement of nothing. Other group flags, and DO_NOT_USE on single groups,
  are not carried over. Over the exposure the flags are OR-ed across integrations; DO_NOT_USE
  only if every integration is.
  DO_NOT_USE pixels have a NaN slope and zero variances. A NaN or zero read noise leaves the slope
  NaN without a flag, as in the reference.
- The median rate of an integration is the median of its clean first differences (group 0 over
  TGROUP if there are none), 0 if undefined; the exposure uses the mean over integrations.

Optional per-segment results (``save_opt``, the ``_fitopt`` product; :class:`OptionalResults`),
as the reference's OLS_C fitter defines them (stcal ``slope_fitter.c``):

- Segment ``k`` of an integration is its k-th fitted segment in ramp order (the segments above,
  after the length-1 pruning); the segment axis is as long as the most segments of any
  pixel-integration (at least 1), the cosmic-ray axis as the most JUMP_DET groups after the first
  group of any pixel-integration (at least 1; the reference leaves it 0 wide when there is none).
  Unused entries are 0.
- SLOPE (DN/s), VAR_POISSON and VAR_RNOISE per segment as used in the fit; WEIGHTS = 1 / (var_P +
  var_R)^2. For n >= 3 groups, SIGSLOPE = sqrt(sum w / D) and YINT = (sum w x^2 sum w y - sum w x
  sum w x y) / D, SIGYINT = sqrt(sum w x^2 / D) with the fit's weights w, D = sum w sum w x^2 -
  (sum w x)^2 and x the group number (so YINT is the value at the first fitted group, DN; SIGSLOPE
  is per group, not divided by TGROUP). For 2 groups SIGSLOPE = SIGYINT = 1.41421356 RN (electrons)
  and YINT the line through both extrapolated to group 0; for 1 group all three are 0.
- PEDESTAL = group 0 - (integration slope) * ((NFRAMES + 1) / 2 + DRPFRMS1) / (NFRAMES +
  GROUPGAP), 0 where the integration's DQ has SATURATED (since stcal 1.20 that includes partial
  saturation) or the value is NaN. The factor is the time of group 0 in units of TGROUP while the
  slope is in DN/s, as in the reference: the result is the zero-time level only for TGROUP = 1 s.
- CRMAG: the jump of every group after the first flagged JUMP_DET, its value minus the previous
  group's (NaN when either is SATURATED), in ramp order.
- As for the per-integration results, VAR_POISSON and WEIGHTS use each integration's own median
  rate (the reference: the exposure mean; identical for one integration). With ``group_range``
  the first fitted group is group 0 for YINT, PEDESTAL and CRMAG (the reference's MIRI group
  trimming; with its ``firstgroup`` the reference keeps the earlier groups in the count).

Integrations stream through :class:`RampFitAccumulator` in blocks, so memory stays flat in NINTS:
the exposure results need only per-pixel float64 sums. Because the exposure-wide median rate is
only known at the end, the per-integration Poisson variance (and ERR) use *that integration's own*
median rate, whereas the reference uses the exposure mean for both. The slopes, VAR_RNOISE, DQ and
every exposure-level result do not depend on this and match the reference bit for bit on the
reference outputs; the per-integration VAR_POISSON differs by the ratio of the two median rates.
On the NIRCam SUB160 reference exposure (3 integrations) that is a median 6% (ERR 2%) where the
Poisson term dominates; where the rate is consistent with zero the Poisson terms are small and can
differ by large factors, ERR by up to ~40%.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from . import dq as dqflags
from .errors import ConfigError

__all__ = [
    "IntegrationResults",
    "ExposureResult",
    "OptionalResults",
    "RampFitAccumulator",
    "fit_ramps",
    "usable_group_range",
]

#: Values of ``power_snr``: where the S/N that picks the Fixsen weighting power comes from.
POWER_SNR_CHOICES = ("stepwise", "endpoints")

#: The arrays of :class:`ExposureResult` and :class:`IntegrationResults`, in the kernel's order,
#: with their dtypes.
RESULT_DTYPES = {"slope": np.dtype(np.float32), "err": np.dtype(np.float32),
                 "dq": np.dtype(np.uint32), "var_poisson": np.dtype(np.float32),
                 "var_rnoise": np.dtype(np.float32)}


@dataclass(frozen=True)
class IntegrationResults:
    """Per-integration ramp-fit results (the ``rateints`` product), each of shape (nb, ny, nx).

    Attributes
    ----------
    slope : ndarray, float32
        Count rate, DN/s (NaN where DO_NOT_USE).
    err : ndarray, float32
        sqrt(1 / sum over segments of 1 / (var_P + var_R)), DN/s.
    dq : ndarray, uint32
        Data quality.
    var_poisson : ndarray, float32
        Poisson variance of the slope, from this integration's own median rate, (DN/s)^2.
    var_rnoise : ndarray, float32
        Read-noise variance of the slope, (DN/s)^2.
    """

    slope: np.ndarray
    err: np.ndarray
    dq: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray

    @classmethod
    def empty(cls, nints: int, shape: tuple[int, int]) -> IntegrationResults:
        """Uninitialised results for ``nints`` integrations of ``shape`` (ny, nx)."""
        return cls(*(np.empty((int(nints), *shape), dt) for dt in RESULT_DTYPES.values()))

    def __getitem__(self, index) -> IntegrationResults:
        """The results of a slice of integrations (views)."""
        return IntegrationResults(*(getattr(self, field)[index] for field in RESULT_DTYPES))


@dataclass(frozen=True)
class ExposureResult:
    """Exposure-level ramp-fit results (the ``rate`` product), each of shape (ny, nx).

    Attributes
    ----------
    slope : ndarray, float32
        Count rate, DN/s (NaN where DO_NOT_USE).
    err : ndarray, float32
        sqrt(var_poisson + var_rnoise), DN/s.
    dq : ndarray, uint32
        Data quality.
    var_poisson, var_rnoise : ndarray, float32
        Poisson and read-noise variances of the slope, (DN/s)^2.
    """

    slope: np.ndarray
    err: np.ndarray
    dq: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> ExposureResult:
        """Uninitialised results of ``shape`` (ny, nx)."""
        return cls(*(np.empty(shape, dt) for dt in RESULT_DTYPES.values()))


_OPT_NAMES = ("slope", "sigslope", "var_poisson", "var_rnoise", "yint", "sigyint", "pedestal",
              "weights", "crmag")


@dataclass(frozen=True)
class OptionalResults:
    """Per-segment ramp-fit results (the ``_fitopt`` product); all float32, C-contiguous.

    ``nseg`` is the most fitted segments of any pixel-integration, ``ncr`` the most cosmic rays
    (both at least 1); entries past a pixel's own count are 0. Large arrays may be disk-backed
    (:func:`jwpipe.datamodels.spill.allocate`).

    Attributes
    ----------
    slope : ndarray of shape (nints, nseg, ny, nx)
        Segment slope, DN/s.
    sigslope : ndarray of shape (nints, nseg, ny, nx)
        Sigma of the segment slope as the reference stores it (per group, see the module notes).
    var_poisson, var_rnoise : ndarray of shape (nints, nseg, ny, nx)
        Poisson and read-noise variances of the segment slope, (DN/s)^2.
    yint, sigyint : ndarray of shape (nints, nseg, ny, nx)
        Segment intercept at the first fitted group (DN) and its sigma.
    pedestal : ndarray of shape (nints, ny, nx)
        Group 0 extrapolated back by the integration slope, DN (0 where SATURATED).
    weights : ndarray of shape (nints, nseg, ny, nx)
        1 / (var_poisson + var_rnoise)^2 of the segment.
    crmag : ndarray of shape (nints, ncr, ny, nx)
        Cosmic-ray magnitudes (jumps at JUMP_DET groups), DN.
    """

    slope: np.ndarray
    sigslope: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    yint: np.ndarray
    sigyint: np.ndarray
    pedestal: np.ndarray
    weights: np.ndarray
    crmag: np.ndarray

    @classmethod
    def allocate(cls, nints: int, nseg: int, ncr: int, shape: tuple[int, int], *, fill=None,
                 spill_dir=None) -> OptionalResults:
        """Arrays for ``nints`` integrations (disk-backed when large; uninitialised unless fill)."""
        from .datamodels.spill import allocate

        seg = (int(nints), int(nseg), *shape)
        arrays = {name: allocate(seg, np.float32, fill=fill, spill_dir=spill_dir)
                  for name in _OPT_NAMES if name not in ("pedestal", "crmag")}
        arrays["pedestal"] = allocate((int(nints), *shape), np.float32, fill=fill,
                                      spill_dir=spill_dir)
        arrays["crmag"] = allocate((int(nints), int(ncr), *shape), np.float32, fill=fill,
                                   spill_dir=spill_dir)
        return cls(**arrays)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The nine arrays in the kernel's order (slope ... sigyint, pedestal, weights, crmag)."""
        return tuple(getattr(self, name) for name in _OPT_NAMES)

    @property
    def nseg(self) -> int:
        return self.slope.shape[1]

    @property
    def ncr(self) -> int:
        return self.crmag.shape[1]


def _kernel_array(a, dtype, name: str, shape: tuple[int, ...] | None = None,
                  kinds: str = "fiub") -> np.ndarray:
    """``a`` as a C-contiguous native-order array of ``dtype``, copying only when needed.

    The caller's array is never modified: byte-swapped, non-contiguous or differently typed input
    is converted into a new array; read-only arrays (e.g. memory-mapped FITS data) of the right
    type pass through without a copy.
    """
    a = np.asarray(a)
    if a.dtype.kind not in kinds:
        raise ConfigError(f"{name} must be a numeric array, got dtype {a.dtype}")
    if shape is not None and a.shape != tuple(shape):
        raise ConfigError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
    want = np.dtype(dtype)
    if a.dtype != want or not a.flags.c_contiguous:
        if want == np.uint8 and a.dtype != want and a.size:
            lo, hi = int(a.min()), int(a.max())
            if lo < 0 or hi > 255:
                raise ConfigError(f"{name} holds values outside 0-255 (group DQ is uint8)")
        a = np.ascontiguousarray(a, dtype=want)
    return a


def _optional_image(a, dtype, name: str, shape: tuple[int, int]):
    """A per-pixel input that may be constant: (array, 0), or (None, value) for None, a scalar or
    a broadcast view of one value (all strides 0, as ``np.broadcast_to`` makes)."""
    if a is None:
        return None, 0
    if isinstance(a, np.ndarray) and a.ndim and a.size and not any(a.strides):
        if a.shape != tuple(shape):
            raise ConfigError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
        a = a.reshape(-1)[0]
    if np.ndim(a) == 0:
        return None, np.asarray(a, dtype=dtype)[()].item()
    return _kernel_array(a, dtype, name, shape), 0


def usable_group_range(groupdq) -> tuple[int, int]:
    """Groups left after dropping those that are DO_NOT_USE in every pixel at the ramp's ends.

    The reference pipeline does this for MIRI (instrument policy, applied by the step): leading
    groups DO_NOT_USE for all pixels and integrations are dropped, and then the last group if it is
    DO_NOT_USE everywhere. Pass the result as ``group_range``.

    Parameters
    ----------
    groupdq : ndarray of shape (nints, ngroups, ny, nx), uint8
        Group DQ of the whole exposure (memory-mapped is fine: read one integration at a time).

    Returns
    -------
    (first, stop) : tuple of int
        Fit groups ``first <= g < stop``; ``first == stop`` when no group is usable.
    """
    groupdq = np.asarray(groupdq)
    if groupdq.ndim != 4:
        raise ConfigError(f"groupdq must be 4-D (nints, ngroups, ny, nx), got {groupdq.shape}")
    nints, ngroups = groupdq.shape[:2]

    def all_dnu(g: int) -> bool:
        return all(bool(np.all(groupdq[i, g] & dqflags.DO_NOT_USE)) for i in range(nints))

    first = 0
    while first < ngroups and all_dnu(first):
        first += 1
    stop = ngroups
    if stop > first and all_dnu(stop - 1):
        stop -= 1
    return first, stop


class RampFitAccumulator:
    """Fit ramps integration block by integration block; memory does not grow with NINTS.

    Parameters
    ----------
    shape : (int, int)
        Image shape (ny, nx).
    gain : ndarray of shape (ny, nx), float32
        Gain, e-/DN. Pixels with gain <= 0 or NaN get DO_NOT_USE|NO_GAIN_VALUE.
    readnoise : ndarray of shape (ny, nx), float32
        CDS read noise, DN (the READNOISE reference file).
    group_time, frame_time : float
        TGROUP and TFRAME, seconds.
    nframes : int
        Frames averaged per group (NFRAMES).
    ngroups : int
        Groups per integration in the blocks passed to :meth:`add_block`.
    pixeldq : ndarray of shape (ny, nx), uint32, optional
        PIXELDQ; propagated to every output DQ.
    avg_dark_current : float or ndarray of shape (ny, nx), float32, optional
        Average dark current, DN/s, added to the rate in the Poisson variance (AVDRKCUR). Default 0.
    suppress_one_group : bool
        A ramp with a single usable group gets no slope (default, as the reference); with False it
        gets that group's value over its time, and saturated ramps can be rescued from ZEROFRAME.
    group_range : (int, int), optional
        Fit only groups ``first <= g < stop``, as if the ramp had no others (see
        :func:`usable_group_range`). Default: all groups.
    nthreads : int
        OpenMP threads for the kernel (results do not depend on it; a build without OpenMP, see
        ``jwpipe.show_config()``, runs serially).
    save_opt : bool
        Also compute the per-segment results (:meth:`optional_results`). Every pixel then goes
        through the per-pixel fit (slower; the other results are identical).
    groupgap, drop_frames1 : int
        GROUPGAP and DRPFRMS1, for the fitopt PEDESTAL only.
    spill_dir : path, optional
        Where large fitopt arrays spill to disk (see :func:`jwpipe.datamodels.spill.allocate`).
    power_snr : {"stepwise", "endpoints"}
        How each segment's weighting power is picked: stepwise from the S/N of the slopes of the
        lower powers (default, unbiased) or from the S/N of the last minus the first group (the
        reference pipeline, biased near the thresholds; see the module docstring).
    """

    def __init__(self, shape, gain, readnoise, group_time, frame_time, nframes, ngroups, *,
                 pixeldq=None, avg_dark_current=None, suppress_one_group=True,
                 group_range=None, nthreads=1, save_opt=False, groupgap=0, drop_frames1=0,
                 spill_dir=None, power_snr="stepwise"):
        from ._ext._ramp_fit import RampFitKernel

        if power_snr not in POWER_SNR_CHOICES:
            raise ConfigError(f"power_snr must be one of {', '.join(POWER_SNR_CHOICES)}, "
                              f"got {power_snr!r}")

        try:
            ny, nx = (int(v) for v in shape)
        except (TypeError, ValueError):
            raise ConfigError(f"shape must be (ny, nx), got {shape!r}") from None
        if ny < 1 or nx < 1:
            raise ConfigError(f"shape must be positive, got {shape!r}")
        self.shape = (ny, nx)
        self.ngroups = int(ngroups)
        if self.ngroups < 1:
            raise ConfigError(f"ngroups must be >= 1, got {ngroups!r}")
        if group_range is None:
            group_range = (0, self.ngroups)
        first, stop = (int(v) for v in group_range)
        if not 0 <= first < stop <= self.ngroups:
            raise ConfigError(f"group_range must satisfy 0 <= first < stop <= ngroups "
                              f"({self.ngroups}), got {group_range!r}")
        self.group_range = (first, stop)
        nframes = int(nframes)
        if nframes < 1:
            raise ConfigError(f"nframes must be >= 1, got {nframes!r}")
        # Times pass through float32, as the reference reads them.
        self.group_time = float(np.float32(group_time))
        self.frame_time = float(np.float32(frame_time))
        if not (self.group_time > 0 and math.isfinite(self.group_time)):
            raise ConfigError(f"group_time must be a positive number, got {group_time!r}")
        if not (self.frame_time > 0 and math.isfinite(self.frame_time)):
            raise ConfigError(f"frame_time must be a positive number, got {frame_time!r}")
        self.nframes = nframes
        self.one_group_time = (float(nframes) + 1.0) * self.frame_time / 2.0
        self.suppress_one_group = bool(suppress_one_group)
        self.nthreads = int(nthreads)
        if self.nthreads < 1:
            raise ConfigError(f"nthreads must be >= 1, got {nthreads!r}")

        self.gain = _kernel_array(gain, np.float32, "gain", self.shape, "fiu")
        # CDS read noise in DN; the kernel turns it into the noise of one group in electrons,
        # readnoise * gain / sqrt(2 * nframes), as the reference does.
        self.readnoise = _kernel_array(readnoise, np.float32, "readnoise", self.shape, "fiu")
        # constant dark current / no PIXELDQ: no (ny, nx) array is made
        self.dark, self.dark_value = _optional_image(avg_dark_current, np.float32,
                                                     "avg_dark_current", self.shape)
        self.pixeldq, pdq_value = _optional_image(pixeldq, np.uint32, "pixeldq", self.shape)
        if self.pixeldq is None and pdq_value:
            self.pixeldq = np.full(self.shape, pdq_value, np.uint32)
        self._sums = None  # running sums, allocated by the first add_block
        self._exposure = None  # result of fit_exposure
        self._nints = 0
        self.save_opt = bool(save_opt)
        self.spill_dir = spill_dir
        self._opt_blocks: list[OptionalResults] = []  # fitopt results of each block, in order
        # The reference's pedestal factor, evaluated as it does (integer frame counts).
        pedestal_factor = ((nframes + 1) / 2.0 + int(drop_frames1 or 0)) / (
            nframes + int(groupgap or 0))
        self._kernel = RampFitKernel(self.gain, self.readnoise, self.dark, self.dark_value,
                                     self.pixeldq, self.ngroups, first, stop, nframes,
                                     self.group_time, self.frame_time, self.one_group_time,
                                     self.suppress_one_group, pedestal_factor,
                                     power_snr == "endpoints")

    def _sums_dq_state(self):
        if self._sums is None:
            self._sums = (np.zeros((5, *self.shape), np.float64), np.zeros(self.shape, np.uint32),
                          np.zeros(self.shape, np.uint8))
        return self._sums

    @property
    def nints(self) -> int:
        """Integrations added so far."""
        return self._nints

    def add_block(self, data, groupdq, zeroframe=None, *, out=None) -> IntegrationResults:
        """Fit a block of integrations and add them to the exposure sums.

        Parameters
        ----------
        data : ndarray of shape (nb, ngroups, ny, nx), float32
            Ramps, DN. Other float types are rounded to float32; byte-swapped or non-contiguous
            input is copied (the caller's array is never modified).
        groupdq : ndarray of shape (nb, ngroups, ny, nx), uint8
            Group DQ.
        zeroframe : ndarray of shape (nb, ny, nx), float32, optional
            ZEROFRAME; used only with ``suppress_one_group=False`` (0 means no value).
        out : IntegrationResults, optional
            Arrays of shape (nb, ny, nx) (float32/uint32, C-contiguous) to write into.

        Returns
        -------
        IntegrationResults
            Results for these integrations, each (nb, ny, nx). VAR_POISSON and ERR use each
            integration's own median rate.
        """
        ny, nx = self.shape
        if self._exposure is not None:
            raise ConfigError("this accumulator already fitted a whole exposure (fit_exposure)")
        data, groupdq, zeroframe, out = self._prepare(data, groupdq, zeroframe, out)
        opt = self._opt_block(data, groupdq, zeroframe)
        self._kernel.fit_block(data, groupdq, zeroframe, _arrays(out), self._sums_dq_state(),
                               self.nthreads, None if opt is None else opt.arrays())
        self._keep_opt(opt)
        self._nints += data.shape[0]
        return out

    def _opt_block(self, data, groupdq, zeroframe):
        """Fitopt arrays sized for this block (None without save_opt).

        The segment and cosmic-ray axes of the product are only known once every integration
        has been fitted. Each block is sized by a counting pass of the kernel over the block
        (segment finding only, no fitting), its results kept in arrays of exactly that size
        (disk-backed when large), and :meth:`optional_results` pastes the blocks into the
        product's arrays at the end: memory stays bounded by one block, and no capacity has to
        be guessed (the worst case, NGROUPS / 2 segments, would multiply the disk use).
        """
        if not self.save_opt:
            return None
        nseg, ncr = self._kernel.opt_counts(data, groupdq, zeroframe, self.nthreads)
        return OptionalResults.allocate(data.shape[0], max(1, nseg), max(1, ncr), self.shape,
                                        spill_dir=self.spill_dir)

    def _keep_opt(self, opt) -> None:
        if opt is not None:
            from .datamodels.spill import release_pages

            for a in opt.arrays():
                release_pages(a)
            self._opt_blocks.append(opt)

    def optional_results(self) -> OptionalResults:
        """The per-segment results of all integrations added so far (needs ``save_opt``).

        Returns
        -------
        OptionalResults
            Segment axis as long as the most segments of any pixel-integration, cosmic-ray
            axis as the most cosmic rays (both at least 1); unused entries 0.
        """
        from .datamodels.spill import release_pages

        if not self.save_opt:
            raise ConfigError("optional_results needs an accumulator made with save_opt=True")
        blocks = self._opt_blocks
        if not blocks:
            return OptionalResults.allocate(0, 1, 1, self.shape, fill=0, spill_dir=self.spill_dir)
        nseg = max(b.nseg for b in blocks)
        ncr = max(b.ncr for b in blocks)
        if len(blocks) == 1 and blocks[0].nseg == nseg and blocks[0].ncr == ncr:
            return blocks[0]
        out = OptionalResults.allocate(self._nints, nseg, ncr, self.shape, fill=0,
                                       spill_dir=self.spill_dir)
        start = 0
        for b in blocks:  # one block at a time, so only one is ever resident
            stop = start + b.pedestal.shape[0]
            for name in _OPT_NAMES:
                src, dst = getattr(b, name), getattr(out, name)
                if name == "pedestal":
                    dst[start:stop] = src
                else:
                    dst[start:stop, :src.shape[1]] = src
                release_pages(dst[start:stop])
            start = stop
        self._opt_blocks = [out]  # the blocks' temporary files go with them
        return out

    def _prepare(self, data, groupdq, zeroframe, out):
        """Validate and coerce a block's inputs; allocate (or check) the result arrays."""
        ny, nx = self.shape
        data = np.asarray(data)
        if data.ndim != 4 or data.shape[1:] != (self.ngroups, ny, nx):
            raise ConfigError(f"data must have shape (nb, {self.ngroups}, {ny}, {nx}), "
                              f"got {data.shape}")
        nb = data.shape[0]
        data = _kernel_array(data, np.float32, "data", kinds="fiu")
        groupdq = _kernel_array(groupdq, np.uint8, "groupdq", data.shape, kinds="iub")
        if zeroframe is not None:
            zeroframe = _kernel_array(zeroframe, np.float32, "zeroframe", (nb, ny, nx), "fiu")
        if out is None:
            out = IntegrationResults.empty(nb, self.shape)
        else:
            _check_result_arrays(out, "out", (nb, ny, nx))
        return data, groupdq, zeroframe, out

    def fit_exposure(self, data, groupdq, zeroframe=None, *, out=None, rate_out=None,
                     integrations: bool = True):
        """Fit a whole exposure at once: as add_block + finish, without keeping running sums.

        Only for an accumulator to which nothing was added; the pixel sums then live in a row
        buffer (less memory traffic than :meth:`add_block`). Returns the same results.

        Parameters
        ----------
        data, groupdq, zeroframe, out
            As for :meth:`add_block`.
        rate_out : ExposureResult, optional
            Arrays of shape (ny, nx) (float32/uint32, C-contiguous) to write the exposure results
            into, as ``out`` for the integrations (say, to reuse them from one exposure to the
            next); returned as the first item.
        integrations : bool
            False (one-integration exposures only): no per-integration results are kept, which
            saves five (ny, nx) arrays; the second item returned is then None.

        Returns
        -------
        (ExposureResult, IntegrationResults or None)
        """
        if self._nints or self._sums is not None or self._exposure is not None:
            raise ConfigError("fit_exposure needs a fresh accumulator (integrations were added)")
        if rate_out is None:
            rate = ExposureResult.empty(self.shape)
        else:
            _check_result_arrays(rate_out, "rate_out", self.shape)
            rate = rate_out
        if not integrations:
            if np.ndim(data) != 4 or np.shape(data)[0] != 1 or out is not None:
                raise ConfigError("integrations=False needs one integration and no out")
            # The kernel writes a row's integration results before that row's exposure
            # results, and with one integration they agree: both may share the same memory.
            out = IntegrationResults(*(a.reshape(1, *a.shape) for a in _arrays(rate)))
        data, groupdq, zeroframe, out = self._prepare(data, groupdq, zeroframe, out)
        opt = self._opt_block(data, groupdq, zeroframe)
        self._kernel.fit_exposure(data, groupdq, zeroframe, _arrays(out), _arrays(rate, 1),
                                  self.nthreads, None if opt is None else opt.arrays())
        self._keep_opt(opt)
        self._exposure = rate
        self._nints = data.shape[0]
        return rate, (out if integrations else None)

    def finish(self) -> ExposureResult:
        """Exposure-level results from the integrations added so far (does not reset them).

        Returns
        -------
        ExposureResult
            Arrays of shape (ny, nx); with no integration added, all pixels are DO_NOT_USE.
        """
        if self._exposure is not None:
            return self._exposure
        res = ExposureResult.empty(self.shape)
        self._kernel.finish(self._nints, self._sums_dq_state(), _arrays(res, 1), self.nthreads)
        return res


def _check_result_arrays(res, name: str, shape: tuple[int, ...]) -> None:
    """Raise ConfigError unless res holds writeable C-contiguous result arrays of this shape."""
    for field, want in RESULT_DTYPES.items():
        a = getattr(res, field, None)
        if (not isinstance(a, np.ndarray) or a.dtype != want or a.shape != shape
                or not a.flags.c_contiguous or not a.flags.writeable):
            raise ConfigError(f"{name}.{field} must be a writeable C-contiguous "
                              f"{want.name} array of shape {shape}")


def _arrays(res, lead=None):
    """(slope, err, dq, var_poisson, var_rnoise) of a result, as (lead, ny, nx) views if asked."""
    arrays = tuple(getattr(res, field) for field in RESULT_DTYPES)
    if lead is not None:
        arrays = tuple(a.reshape(lead, *a.shape) for a in arrays)
    return arrays


def _blocks(nints: int, per_block: int) -> Iterator[slice]:
    for start in range(0, nints, per_block):
        yield slice(start, min(start + per_block, nints))


def fit_ramps(data, groupdq, gain, readnoise, group_time, frame_time, nframes, *, pixeldq=None,
              zeroframe=None, avg_dark_current=None, suppress_one_group=True, group_range=None,
              block_ints=None, nthreads=1, save_opt=False, groupgap=0, drop_frames1=0,
              spill_dir=None, power_snr="stepwise"):
    """Fit all ramps of an exposure (a convenience over :class:`RampFitAccumulator`).

    Parameters
    ----------
    data : ndarray of shape (nints, ngroups, ny, nx), float32
        Ramps, DN (memory-mapped, read-only or big-endian input is fine).
    groupdq : ndarray of shape (nints, ngroups, ny, nx), uint8
        Group DQ.
    gain, readnoise, group_time, frame_time, nframes, pixeldq, avg_dark_current,
    suppress_one_group, group_range, nthreads, save_opt, groupgap, drop_frames1, spill_dir,
    power_snr
        As for :class:`RampFitAccumulator` (``readnoise`` is the CDS noise in DN).
    zeroframe : ndarray of shape (nints, ny, nx), float32, optional
        ZEROFRAME (used only with ``suppress_one_group=False``).
    block_ints : int, optional
        Integrations per kernel call. Default: all at once when the input needs no conversion,
        else blocks of about 256 MB so conversion copies stay bounded.

    Returns
    -------
    (ExposureResult, IntegrationResults) or (ExposureResult, IntegrationResults, OptionalResults)
        The ``rate`` arrays (ny, nx) and the ``rateints`` arrays (nints, ny, nx); with
        ``save_opt`` also the ``fitopt`` arrays.
    """
    data = np.asarray(data)
    if data.ndim != 4:
        raise ConfigError(f"data must be 4-D (nints, ngroups, ny, nx), got shape {data.shape}")
    nints, ngroups, ny, nx = data.shape
    groupdq = np.asarray(groupdq)
    if groupdq.shape != data.shape:
        raise ConfigError(f"groupdq must have shape {data.shape}, got {groupdq.shape}")
    if zeroframe is not None:
        zeroframe = np.asarray(zeroframe)
        if zeroframe.shape != (nints, ny, nx):
            raise ConfigError(f"zeroframe must have shape {(nints, ny, nx)}, got {zeroframe.shape}")
    acc = RampFitAccumulator((ny, nx), gain, readnoise, group_time, frame_time, nframes, ngroups,
                             pixeldq=pixeldq, avg_dark_current=avg_dark_current,
                             suppress_one_group=suppress_one_group, group_range=group_range,
                             nthreads=nthreads, save_opt=save_opt, groupgap=groupgap,
                             drop_frames1=drop_frames1, spill_dir=spill_dir,
                             power_snr=power_snr)
    if block_ints is None:
        ready = (data.dtype == np.dtype(np.float32) and data.flags.c_contiguous
                 and groupdq.dtype == np.uint8 and groupdq.flags.c_contiguous)
        per_int = max(1, ngroups * ny * nx * 4)
        block_ints = nints if ready else max(1, (256 << 20) // per_int)
    block_ints = max(1, int(block_ints))
    if block_ints >= nints:  # one pass: no running sums needed
        rate, ints = acc.fit_exposure(data, groupdq, zeroframe)
    else:
        ints = IntegrationResults.empty(nints, (ny, nx))
        for sl in _blocks(nints, block_ints):
            acc.add_block(data[sl], groupdq[sl], None if zeroframe is None else zeroframe[sl],
                          out=ints[sl])
        rate = acc.finish()
    if save_opt:
        return rate, ints, acc.optional_results()
    return rate, ints
