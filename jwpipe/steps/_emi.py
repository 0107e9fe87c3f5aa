"""MIRI EMI noise: readout timing, the EMICORR reference, and the two fits of the emicorr step.

Electromagnetic interference adds to every MIRI read a periodic signal of a few known
frequencies; its value at a read depends on the read's time. Times count 10 us pixel clocks from
the exposure's first read: the four outputs read columns ``4k .. 4k + 3`` of a row together,
``k * nsamples`` clocks into the row; rows start ``rowclocks`` apart; a frame lasts
``ny * rowclocks`` plus 7 clocks for each detector row a subarray skips; an integration lasts
``ngroups`` frames, plus a reset frame of ``frameclocks`` in the FASTR1 and SLOWR1 patterns.

``joint`` fit (Brandt's algorithm in the reference pipeline). The ramps of quiet pixels (spread
over the groups below twice the median, PIXELDQ 0) are summed by the phase of their first read
into as many bins as the reference waveform has samples. For a trial phase the waveform gives,
per bin and group, the EMI ``z``; removing a best-fit line over the groups from ``z`` and from
the summed ramps ``Y`` leaves ``Pz`` and ``PY``, and the amplitude that makes the ramps straightest
is ``c = sum(Pz . Y) / sum(n |Pz|^2)``, lowering chi^2 by ``sum(Pz . Y)^2 / sum(n |Pz|^2)``.
That is evaluated on a grid of 500 trial phases, refined by a parabola through the best three,
and ``c`` computed at the refined phase. Every integration shares the phase (shifted by the
integration's start time) and amplitude, unless ``fit_ints_separately``.

``sequential`` fit (Bergeron's algorithm, translated from IDL in the reference pipeline). Each of
the first ``nints_to_phase`` integrations has a line over groups 1 .. ngroups - 2 and their
median removed; the four outputs are averaged; the values are binned by phase into ``nbins``
sigma-clipped means, the waveform. That waveform, resampled to one value per pixel clock, is
subtracted at every read's phase; with a reference waveform, the reference shifted to the best
correlation with it (and scaled to it, with ``scale_reference``) is subtracted instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, ReferenceFileError

__all__ = ["SUBARRAY_CLOCKS", "PIXEL_CLOCK", "ReadoutClock", "EmiFrequency", "emi_configuration",
           "PeriodicWave", "quiet_pixels", "bin_ramps_by_phase", "JointSums", "JointTemplates",
           "fit_joint",
           "SequentialSamples", "sequential_lookup", "rebin_nearest", "subtract_emi"]

#: Pixel clock, s.
PIXEL_CLOCK = 10e-6
#: Clocks per detector row that a subarray does not read.
SKIPPED_ROW_CLOCKS = 7
DETECTOR_ROWS = 1024
#: (rowclocks, frameclocks) of each MIRI readout (FULL by read speed), from the instrument's
#: clocking (the reference pipeline's table, used when no EMICORR reference is given).
SUBARRAY_CLOCKS = {
    "SLITLESSPRISM": (28, 15904), "MASKLYOT": (90, 32400), "SUB64": (28, 8512),
    "SUB128": (44, 11904), "MASK1140": (82, 23968), "MASK1550": (82, 23968),
    "MASK1065": (82, 23968), "FULL_FAST": (271, 277504), "FULL_SLOW": (2333, 2388992),
    "BRIGHTSKY": (162, 86528), "SUB256": (96, 29952),
}
#: Trial phases of the joint fit.
N_TRIAL_PHASES = 500
#: Below this share of its energy left after removing a line over the groups, a waveform is
#: taken as in phase with the frame rate (the same in every group).
IN_PHASE_TOLERANCE = 1e-9
#: Column slots (of nx / 4) the joint fit leaves out: the reference pipeline's "bad reference
#: column" (columns 4 .. 11 of the array).
EXCLUDED_SLOTS = (1, 2)


def read_speed(readpatt: str) -> str:
    """``"FAST"`` or ``"SLOW"`` from a MIRI READPATT; ConfigError for any other pattern."""
    patt = str(readpatt or "").upper()
    for speed in ("SLOW", "FAST"):
        if speed in patt:
            return speed
    raise ConfigError(f"emicorr: READPATT {readpatt!r} is not a MIRI FAST or SLOW pattern")


def clock_name(subarray: str, readpatt: str) -> str:
    """The readout's name in the clock tables: the subarray, ``FULL_FAST``/``FULL_SLOW``."""
    name = str(subarray or "").upper()
    return f"{name}_{read_speed(readpatt)}" if name == "FULL" else name


@dataclass(frozen=True)
class ReadoutClock:
    """When each MIRI read happens, in pixel clocks.

    Attributes
    ----------
    ny, nx : int
        Subarray rows and columns (nx a multiple of 4).
    ngroups : int
    rowclocks : int
        Clocks from one row's start to the next.
    reset_clocks : int
        Clocks added between integrations (the reset frame of FASTR1/SLOWR1; 0 otherwise).
    nsamples : int
        Clocks per pixel read.
    """

    ny: int
    nx: int
    ngroups: int
    rowclocks: int
    reset_clocks: int
    nsamples: int

    @property
    def nslots(self) -> int:
        """Reads per row and output (``nx // 4``)."""
        return self.nx // 4

    @property
    def frame_clocks(self) -> int:
        return self.ny * self.rowclocks + (DETECTOR_ROWS - self.ny) * SKIPPED_ROW_CLOCKS

    @property
    def integration_clocks(self) -> int:
        return self.ngroups * self.frame_clocks + self.reset_clocks

    def slot_phase(self, period: float) -> np.ndarray:
        """Phase (0 to 1) of each row and slot's read in a frame, float64 (ny, nx // 4)."""
        t = (np.arange(self.ny, dtype=np.float64)[:, None] * self.rowclocks
             + np.arange(self.nslots, dtype=np.float64)[None, :] * self.nsamples)
        return np.mod(t / period, 1.0)

    def group_phase(self, period: float) -> float:
        """Phase advance from one group to the next."""
        return math.fmod(self.frame_clocks / period, 1.0)

    def integration_phase(self, index: int, period: float) -> float:
        """Phase of integration ``index``'s first read (0-based exposure index)."""
        # Exact integer clocks, reduced modulo the period in float64 (< 1e-6 phase error for
        # 1e12 clocks).
        return math.fmod(float(int(index) * self.integration_clocks) / period, 1.0)


def readout_clock(meta, shape, rowclocks: int, frameclocks: int, log=None) -> ReadoutClock:
    """The :class:`ReadoutClock` of an exposure (``shape`` (nints, ngroups, ny, nx))."""
    _, ngroups, ny, nx = shape
    if nx % 4:
        raise ConfigError(f"emicorr: {nx} columns are not a multiple of the 4 MIRI outputs")
    readpatt = str(meta.get("exposure.readpatt") or "").upper()
    speed = read_speed(readpatt)
    nsamples = meta.get("exposure.nsamples")
    nominal = 1 if speed == "FAST" else 9
    nsamples = nominal if nsamples is None else int(nsamples)
    if nsamples < 1 or nsamples * (nx // 4) > rowclocks:
        # The reads of a row must fit in its clocks: NSAMPLES cannot be the clocks per read.
        if log is not None:
            log.warning("emicorr: NSAMPLES = %s does not fit %d reads in a row of %d clocks; "
                        "using %d clocks per read (%s readout)", nsamples, nx // 4, rowclocks,
                        nominal, speed)
        nsamples = nominal
    reset = int(frameclocks) if readpatt.endswith("R1") else 0
    return ReadoutClock(ny=int(ny), nx=int(nx), ngroups=int(ngroups), rowclocks=int(rowclocks),
                        reset_clocks=reset, nsamples=nsamples)


# -- the EMICORR reference ------------------------------------------------------------------------

@dataclass(frozen=True)
class EmiFrequency:
    """One EMI frequency: its name in the reference, value (Hz) and waveform (one period of
    samples, float64, or None when corrected without a reference)."""

    name: str
    frequency: float
    waveform: np.ndarray | None = None

    @property
    def period(self) -> float:
        """Period in pixel clocks."""
        return 1.0 / (self.frequency * PIXEL_CLOCK)


def _node(tree, key, where):
    try:
        return tree[key]
    except (KeyError, TypeError, IndexError):
        raise ReferenceFileError(f"{where}: no {key!r} entry") from None


def emi_configuration(tree, path, subarray: str, readpatt: str, detector: str):
    """What an EMICORR reference says for one readout.

    Parameters
    ----------
    tree : mapping
        The reference's ASDF tree (``frequencies``: name -> {frequency, phase_amplitudes};
        ``subarray_cases``: name -> {rowclocks, frameclocks, freqs: {FAST: [names], SLOW:
        {detector: [names]}}}).
    path : str or Path
        The file, for messages.
    subarray, readpatt, detector : str
        The exposure's SUBARRAY, READPATT, DETECTOR.

    Returns
    -------
    (rowclocks, frameclocks, list of EmiFrequency) or None
        None when the reference has no case for the readout (the step is then skipped).

    Raises
    ------
    ReferenceFileError
        A case or frequency entry lacks a value, or a waveform is not a finite 1-D array.
    """
    speed = read_speed(readpatt)
    cases = _node(tree, "subarray_cases", str(path))
    name = clock_name(subarray, readpatt)
    case = cases.get(name) if hasattr(cases, "get") else None
    if case is None:
        return None
    where = f"{path}: subarray_cases.{name}"
    rowclocks = int(_node(case, "rowclocks", where))
    frameclocks = int(_node(case, "frameclocks", where))
    by_speed = _node(case, "freqs", where)
    freqs = by_speed.get(speed) if hasattr(by_speed, "get") else None
    if speed == "SLOW" and hasattr(freqs, "get"):
        freqs = freqs.get(str(detector).upper())
    if not freqs:
        return None
    table = _node(tree, "frequencies", str(path))
    out = []
    for fname in freqs:
        entry = _node(table, str(fname), f"{path}: frequencies")
        here = f"{path}: frequencies.{fname}"
        value = float(_node(entry, "frequency", here))
        wave = np.asarray(_node(entry, "phase_amplitudes", here), dtype=np.float64)
        if wave.ndim != 1 or wave.size < 4 or not np.isfinite(wave).all() or value <= 0:
            raise ReferenceFileError(f"{here}: needs a positive frequency and a finite 1-D "
                                     f"phase_amplitudes of 4 or more samples (got shape "
                                     f"{wave.shape}, frequency {value})")
        out.append(EmiFrequency(str(fname), value, wave))
    return rowclocks, frameclocks, out


# -- the waveform ---------------------------------------------------------------------------------

class PeriodicWave:
    """A waveform of ``n`` samples over one period, sample ``m`` at phase ``(m + 0.5) / n``,
    interpolated by a periodic cubic spline.

    Evaluated from a table of the spline at ``TABLE_SIZE`` phases, linearly interpolated: for
    the smooth waveforms of EMI the table's error (h^2 / 8 times the second derivative) is
    below 1e-6 of the amplitude, and a read costs a few array operations instead of a spline
    evaluation (the step evaluates every read of the exposure).
    """

    TABLE_SIZE = 16384

    def __init__(self, samples: np.ndarray):
        from scipy.interpolate import CubicSpline

        samples = np.asarray(samples, dtype=np.float64)
        self.n = samples.size
        knots = (np.arange(self.n + 1) + 0.5) / self.n
        spline = CubicSpline(knots, np.append(samples, samples[0]), bc_type="periodic")
        start = 0.5 / self.n
        phase = np.arange(self.TABLE_SIZE + 1) / self.TABLE_SIZE
        table = spline(np.mod(phase - start, 1.0) + start)
        self._value, self._step = table[:-1], np.diff(table)

    def __call__(self, phase) -> np.ndarray:
        """The waveform at ``phase`` (any real values; period 1), float64."""
        x = np.multiply(phase, float(self.TABLE_SIZE), dtype=np.float64)
        cell = np.floor(x)
        x -= cell
        # TABLE_SIZE is a power of two: the bit mask wraps negative cells too.
        index = cell.astype(np.int64)
        np.bitwise_and(index, self.TABLE_SIZE - 1, out=index)
        out = self._step[index]
        out *= x
        out += self._value[index]
        return out


# -- joint fit ------------------------------------------------------------------------------------

def quiet_pixels(ramps: np.ndarray, pixeldq: np.ndarray) -> np.ndarray:
    """Pixels whose spread over the groups is below twice the integration's median spread,
    with PIXELDQ 0.

    Parameters
    ----------
    ramps : ndarray of shape (nints, ngroups, ny, nx), float32
    pixeldq : ndarray of shape (ny, nx), uint32

    Returns
    -------
    ndarray of shape (nints, ny, nx), bool
    """
    spread = np.std(ramps, axis=1)
    out = np.zeros(spread.shape, bool)
    for i, s in enumerate(spread):
        finite = np.isfinite(s)
        if finite.any():
            out[i] = finite & (s < 2.0 * np.median(s[finite])) & (pixeldq == 0)
    return out


def bin_ramps_by_phase(ramps: np.ndarray, use: np.ndarray, slot_bin: np.ndarray, nbins: int):
    """Sum the used pixels' ramps by the phase bin of their read slot, per integration.

    Parameters
    ----------
    ramps : ndarray of shape (nints, ngroups, ny, nx), float32
    use : ndarray of shape (nints, ny, nx), bool
    slot_bin : ndarray of shape (ny, nx // 4), int
        Bin of each slot (the four outputs share it); -1 leaves the slot out.
    nbins : int

    Returns
    -------
    y : ndarray of shape (nints, nbins, ngroups), float64
        Sum of the ramps per bin.
    n : ndarray of shape (nints, nbins), float64
        Pixels per bin.
    """
    nints, ngroups, ny, nx = ramps.shape
    keep = slot_bin.ravel() >= 0
    bins = slot_bin.ravel()[keep]
    weight = use.reshape(nints, ny * (nx // 4), 4).astype(np.float32)
    count = weight.sum(axis=2)[:, keep]                                   # (nints, nkeep)
    per_slot = np.einsum("igsc,isc->igs", ramps.reshape(nints, ngroups, -1, 4), weight,
                         dtype=np.float64)[:, :, keep]                    # (nints, ng, nkeep)
    # One bincount for every (integration, group): bin b of (i, g) is index (i ng + g) nbins + b.
    offset = (np.arange(nints * ngroups) * nbins)[:, None]
    y = np.bincount((bins[None, :] + offset).ravel(), weights=per_slot.ravel(),
                    minlength=nints * ngroups * nbins).reshape(nints, ngroups, nbins)
    offset = (np.arange(nints) * nbins)[:, None]
    n = np.bincount((bins[None, :] + offset).ravel(), weights=count.ravel(),
                    minlength=nints * nbins).reshape(nints, nbins)
    return y.transpose(0, 2, 1), n


def _detrend(z: np.ndarray) -> np.ndarray:
    """``z`` less its least-squares line over the last axis (groups 0, 1, ...)."""
    ng = z.shape[-1]
    t = np.arange(ng, dtype=np.float64) - (ng - 1) / 2.0
    mean = z.mean(axis=-1, keepdims=True)
    slope = (z * t).sum(axis=-1, keepdims=True) / float((t * t).sum())
    return z - mean - slope * t


class JointSums:
    """Binned ramp sums of the joint fit, by the integrations' start phase on the trial grid.

    Integrations whose first read falls at the same grid phase share one sum (at most
    ``ntrial`` of them, kept only for the phases that occur), so memory does not grow with
    NINTS.
    """

    def __init__(self, nbins: int, ngroups: int, ntrial: int = N_TRIAL_PHASES):
        self.nbins, self.ngroups, self.ntrial = nbins, ngroups, ntrial
        self._sums: dict[int, list] = {}

    def add(self, phase: float, y: np.ndarray, n: np.ndarray) -> None:
        """Add one integration's sums ``y`` (nbins, ngroups) and counts ``n`` (nbins,)."""
        shift = int(round(phase * self.ntrial)) % self.ntrial
        entry = self._sums.get(shift)
        if entry is None:
            self._sums[shift] = [np.array(y, np.float64), np.array(n, np.float64)]
        else:
            entry[0] += y
            entry[1] += n

    def arrays(self):
        """(shifts (k,), y (k, nbins, ngroups), n (k, nbins)) of the shifts holding pixels."""
        shifts = np.array(sorted(s for s, (_, n) in self._sums.items() if n.sum() > 0),
                          dtype=np.int64)
        y = np.array([self._sums[s][0] for s in shifts]).reshape(-1, self.nbins, self.ngroups)
        n = np.array([self._sums[s][1] for s in shifts]).reshape(-1, self.nbins)
        return shifts, y, n


def _bin_centres(nbins: int) -> np.ndarray:
    return (np.arange(nbins, dtype=np.float64) + 0.5) / nbins


class JointTemplates:
    """The waveform at every trial phase, bin and group, and what the fit needs of it: computed
    once per frequency, shared by every fit (one per integration with ``fit_ints_separately``).

    Parameters
    ----------
    wave : PeriodicWave
    ngroups : int
    group_phase : float
        Phase advance per group.
    ntrial : int
        Trial phases (``grid = arange(ntrial) / ntrial``).
    """

    def __init__(self, wave: PeriodicWave, ngroups: int, group_phase: float,
                 ntrial: int = N_TRIAL_PHASES):
        self.wave, self.ntrial = wave, ntrial
        self.offsets = (_bin_centres(wave.n)[:, None]
                        + np.arange(ngroups, dtype=np.float64)[None, :] * group_phase)
        grid = np.arange(ntrial, dtype=np.float64) / ntrial
        z = wave(grid[:, None, None] + self.offsets[None])            # (m, nbins, ngroups)
        self.pz = _detrend(z)
        self.pz_energy = (self.pz * self.pz).sum(axis=2)               # (m, nbins)
        self.z_energy = (z * z).sum(axis=2)

    def detrended(self, phases: np.ndarray) -> np.ndarray:
        """``Pz`` at trial-grid-free phases (k,), shape (k, nbins, ngroups)."""
        return _detrend(self.wave(np.asarray(phases)[:, None, None] + self.offsets[None]))


def fit_joint(sums: JointSums, templates: JointTemplates):
    """Phase and amplitude of the waveform that best straightens the summed ramps.

    Parameters
    ----------
    sums : JointSums
    templates : JointTemplates
        Of the same waveform, groups and trial phases.

    Returns
    -------
    phase : float
        Phase (0 to 1) of the waveform at the first read of an integration starting at phase 0;
        integration ``i`` has ``phase + its start phase``.
    amplitude : float
        0 when the sums hold no usable pixel, or the frequency is in phase with the frame rate.
    """
    shifts, y, n = sums.arrays()
    if shifts.size == 0:
        return 0.0, 0.0
    m = templates.ntrial
    # Trial phase q of an integration with start shift s is grid point (q + s) mod m.
    rows = (np.arange(m)[:, None] + shifts[None, :]) % m
    cols = np.arange(shifts.size)[None, :]

    def over_shifts(per_trial_and_shift):
        return per_trial_and_shift[rows, cols].sum(axis=1)

    b = over_shifts(templates.pz.reshape(m, -1) @ y.reshape(shifts.size, -1).T)
    a = over_shifts(templates.pz_energy @ n.T)
    # A frequency in phase with the frame rate puts the same EMI in every group of a pixel:
    # nothing a line over the groups does not absorb, so nothing to fit (or correct).
    if not a.max() > IN_PHASE_TOLERANCE * over_shifts(templates.z_energy @ n.T).max():
        return 0.0, 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = np.where(a > 0, -(b * b) / a, np.nan)
    if not np.isfinite(chi2).any():
        return 0.0, 0.0
    q = int(np.nanargmin(chi2))
    lo, mid, hi = chi2[(q - 1) % m], chi2[q], chi2[(q + 1) % m]
    curvature = lo - 2.0 * mid + hi
    step = 0.5 * (lo - hi) / curvature if np.isfinite(curvature) and curvature > 0 else 0.0
    phase = ((q + step) / m) % 1.0
    # Amplitude at the refined phase.
    pz_best = templates.detrended(phase + shifts / m)                  # (k, nbins, ngroups)
    num = float(np.einsum("kbg,kbg->", pz_best, y))
    den = float(np.einsum("kb,kb->", (pz_best * pz_best).sum(axis=2), n))
    return phase, (num / den if den > 0 else 0.0)


# -- sequential fit -------------------------------------------------------------------------------

class SequentialSamples:
    """The cleaned, output-averaged reads of the phasing integrations and their phases."""

    def __init__(self):
        self.values: list[np.ndarray] = []
        self.phases: list[np.ndarray] = []

    def add(self, ramp: np.ndarray, slot_phase: np.ndarray, group_phase: float,
            int_phase: float) -> None:
        """Clean one integration's ramp (ngroups, ny, nx) and keep its reads by phase."""
        ng, ny, nx = ramp.shape
        data = ramp.astype(np.float64)
        inner = data[1:ng - 1] if ng > 2 else data
        t = np.arange(inner.shape[0], dtype=np.float64)
        tc = t - t.mean()
        slope = np.tensordot(tc, inner, axes=(0, 0)) / float((tc * tc).sum() or 1.0)
        data -= np.arange(ng, dtype=np.float64)[:, None, None] * slope
        inner = data[1:ng - 1] if ng > 2 else data
        level = np.min(inner, axis=0) if inner.shape[0] <= 2 else np.median(inner, axis=0)
        data -= level
        quad = data.reshape(ng, ny, nx // 4, 4).mean(axis=3)
        if quad.shape[2] > 3:  # the reference column slots 1 and 2 take their neighbours' mean
            quad[:, :, 1] = quad[:, :, 2] = 0.5 * (quad[:, :, 0] + quad[:, :, 3])
        quad -= np.median(quad.reshape(ng, -1), axis=1)[:, None, None]
        phase = np.mod(slot_phase[None] + int_phase
                       + np.arange(ng, dtype=np.float64)[:, None, None] * group_phase, 1.0)
        self.values.append(quad.ravel())
        self.phases.append(phase.ravel())


def rebin_nearest(values: np.ndarray, size: float) -> np.ndarray:
    """Resample ``values`` to ``ceil(size)`` points by the nearest lower index (IDL congrid
    without interpolation): point ``m`` takes ``values[floor(m * len / size)]``."""
    n = values.size
    count = int(math.ceil(size))
    index = np.floor(np.arange(count) * (n / float(size))).astype(np.int64)
    return values[np.minimum(index, n - 1)]


def sequential_lookup(samples: SequentialSamples, freq: EmiFrequency, nbins: int | None,
                      scale_reference: bool, log=None) -> np.ndarray:
    """The EMI per pixel clock of one period (the look-up table the correction indexes by
    ``floor(phase * period)``), float64 of ``ceil(period)`` values."""
    from astropy.stats import sigma_clipped_stats

    period = freq.period
    if nbins is None:
        nbins = int(period / 2.0)
    nbins = max(2, min(int(nbins), 500))
    values = np.concatenate(samples.values)
    phases = np.concatenate(samples.phases)
    # Bin b holds phases in (b / nbins, (b + 1) / nbins].
    which = np.ceil(phases * nbins).astype(np.int64) - 1
    which[which < 0] = nbins - 1  # phase 0 is phase 1
    order = np.argsort(which, kind="stable")
    edges = np.searchsorted(which[order], np.arange(nbins + 1))
    wave = np.zeros(nbins)
    for b in range(nbins):
        chunk = values[order[edges[b]:edges[b + 1]]]
        if chunk.size:
            wave[b] = sigma_clipped_stats(chunk)[0]
    wave -= np.median(wave)
    lut = rebin_nearest(wave, period)
    if freq.waveform is None:
        return lut
    ref = freq.waveform
    resampled = rebin_nearest(wave, ref.size)
    corr = np.array([_pearson(np.roll(ref, k), resampled) for k in range(ref.size)])
    shift = int(np.nanargmax(corr)) if np.isfinite(corr).any() else 0
    lut_ref = rebin_nearest(np.roll(ref, shift), period)
    if scale_reference:
        scale = np.polyfit(lut_ref, lut, 1)[0]
        if log is not None:
            log.info("emicorr: %s reference waveform shifted %d samples, scaled by %.4g",
                     freq.name, shift, scale)
        lut_ref = lut_ref * scale
    return lut_ref


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


# -- the correction -------------------------------------------------------------------------------

def subtract_emi(ramps: np.ndarray, emi: np.ndarray) -> None:
    """Subtract a per-slot EMI ``emi`` (..., ny, nx // 4) from all four outputs of ``ramps``
    (..., ny, nx), float32, in place."""
    view = ramps.reshape(ramps.shape[:-1] + (ramps.shape[-1] // 4, 4))
    view -= emi.astype(np.float32)[..., None]
