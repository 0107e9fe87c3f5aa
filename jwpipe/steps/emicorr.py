"""emicorr (MIRI, skipped by default): remove electromagnetic-interference noise from the ramps.

The EMICORR reference (ASDF) says which frequencies to correct for the exposure's subarray and
read speed, with one period of each frequency's waveform; ``onthefly_corr_freq`` corrects given
frequencies without a reference (``sequential`` only). The frequencies are fitted and removed one
after the other, each on data already cleaned of the previous ones. See :mod:`._emi` for the
readout timing and the ``joint`` (default) and ``sequential`` fits.

Streaming: a fit needs every integration (``joint``) or the first ``nints_to_phase``
(``sequential``), before any block is corrected. The step asks the stage-1 driver for one pass
over the blocks per frequency (:meth:`EmiCorrStep.scan_block` reads, never changes them), then
corrects each block of the main pass; memory does not grow with NINTS (``sequential`` keeps the
reads of its phasing integrations).

Skipped (``cal_step`` SKIPPED, with the reason logged) for non-MIRI data, read patterns other than
FAST, FASTR1, SLOW and SLOWR1, fewer than 3 groups, or a readout the reference has no case for.

Differences from the reference pipeline (jwst 3.0), none of which changes the model: the joint
fit's quiet-pixel threshold is twice the median spread of each integration rather than of the
whole exposure (so that integrations stream); its amplitude is computed at the refined phase and
each integration's start phase is rounded to the nearest trial phase rather than the next one;
the waveform is interpolated by a periodic cubic spline rather than a cubic through one wrapped
sample at each end; the sequential fit skips the full-frame last-column timing tweak (which adds
2**32 clocks there). An NSAMPLES that cannot be the clocks per read (the reads of a row must fit
in ``rowclocks``) is replaced by the read speed's value, 1 (FAST) or 9 (SLOW), with a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..logs import get_logger
from . import _emi
from ._stage1_refs import exposure_int, is_miri, open_ref
from .base import NOT_APPLICABLE, RampBlock, RampStep, StepParams, exposure_shape

__all__ = ["EmiCorrStep", "EmiCorrParams"]

log = get_logger("step.emicorr")

READ_PATTERNS = ("FAST", "FASTR1", "SLOW", "SLOWR1")
#: Integrations evaluated together (bounds the float64 temporaries to ~16 ramps' worth of
#: one output).
INTS_PER_CHUNK = 16


@dataclass
class EmiCorrParams(StepParams):
    skip: bool = True
    #: 'joint' (needs the reference's waveforms) or 'sequential'.
    algorithm: str = "joint"
    #: sequential: integrations to phase (default: enough for ``use_n_cycles`` periods).
    nints_to_phase: int | None = None
    #: sequential: bins in one period (default: period / 2 clocks, at most 500).
    nbins: int | None = None
    #: sequential with a reference: scale its waveform to the data's.
    scale_reference: bool = True
    #: Frequencies (Hz) to correct without a reference (sequential), comma-separated.
    onthefly_corr_freq: str | None = None
    #: sequential: periods the phasing integrations must span (None: every integration).
    use_n_cycles: int | None = 3
    #: joint: a phase and amplitude per integration instead of one for the exposure.
    fit_ints_separately: bool = False


@dataclass
class _Frequency:
    """One frequency's fit: its inputs, the sums a scan fills, and the result."""

    freq: _emi.EmiFrequency
    wave: _emi.PeriodicWave | None = None
    templates: _emi.JointTemplates | None = None
    sums: _emi.JointSums | None = None
    samples: _emi.SequentialSamples | None = None
    slot_bin: np.ndarray | None = None
    # results: (phase, amplitude) for the exposure or per integration (joint); lookup table
    # (sequential)
    phase: float = 0.0
    amplitude: float = 0.0
    per_int: dict = field(default_factory=dict)
    lookup: np.ndarray | None = None


@dataclass
class _EmiState:
    clock: _emi.ReadoutClock
    algorithm: str
    frequencies: list
    nints: int
    nints_to_phase: int
    fit_ints_separately: bool
    scanned: int = 0          # frequencies fitted so far
    seen: int = 0             # integrations scanned in the current pass


class EmiCorrStep(RampStep):
    """Fit and subtract MIRI EMI noise (MIRI FAST/SLOW patterns, 3 or more groups)."""

    name = "emicorr"
    class_name = "EmiCorrStep"
    cal_step = "emicorr"
    reference_types = ("emicorr",)
    Params = EmiCorrParams

    def _onthefly(self) -> list[float] | None:
        text = self.params.onthefly_corr_freq
        if text is None or str(text).strip().lower() in ("", "none"):
            return None
        items = text if isinstance(text, (list, tuple)) else str(text).strip("[]").split(",")
        try:
            values = [float(v) for v in items if str(v).strip()]
        except ValueError:
            raise ConfigError(f"step emicorr: onthefly_corr_freq must be frequencies in Hz, "
                              f"got {text!r}") from None
        if not values or min(values) <= 0:
            raise ConfigError(f"step emicorr: onthefly_corr_freq must be positive, got {text!r}")
        return values

    def used_references(self, model) -> tuple[str, ...]:
        return () if self._onthefly() is not None else self.reference_types

    def required_references(self) -> tuple[str, ...]:
        return () if self._onthefly() is not None else self.reference_types

    def prepare(self, model, refs) -> _EmiState | None:
        p = self.params
        if p.algorithm not in ("joint", "sequential"):
            raise ConfigError(f"step emicorr: algorithm must be 'joint' or 'sequential', got "
                              f"{p.algorithm!r}")
        meta = model.meta
        if not is_miri(meta):
            log.warning("emicorr applies to MIRI data only; step skipped")
            return None
        readpatt = str(meta.get("exposure.readpatt") or "").upper()
        if readpatt not in READ_PATTERNS:
            log.warning("emicorr: no correction for read pattern %s; step skipped", readpatt)
            return None
        shape = exposure_shape(model)
        nints, ngroups = shape[:2]
        if ngroups < 3:
            log.warning("emicorr needs 3 or more groups (NGROUPS = %d); step skipped", ngroups)
            return None
        subarray = str(meta.get("subarray.name") or "")
        onthefly = self._onthefly()
        algorithm = p.algorithm
        if onthefly is not None:
            name = _emi.clock_name(subarray, readpatt)
            if name not in _emi.SUBARRAY_CLOCKS:
                log.warning("emicorr: no readout clocks known for subarray %s; step skipped",
                            name)
                return None
            rowclocks, frameclocks = _emi.SUBARRAY_CLOCKS[name]
            freqs = [_emi.EmiFrequency(repr(f), f) for f in onthefly]
            if algorithm == "joint":
                log.warning("emicorr: the joint fit needs a reference waveform; fitting the "
                            "on-the-fly frequencies with the sequential algorithm")
                algorithm = "sequential"
        else:
            path = refs.get("emicorr", NOT_APPLICABLE)
            ref = open_ref(path, "emicorr")
            found = _emi.emi_configuration(ref.tree, ref.path, subarray, readpatt,
                                           meta.get("instrument.detector"))
            if found is None:
                log.warning("emicorr: %s has no case for subarray %s, %s; step skipped",
                            ref.path.name, subarray, readpatt)
                return None
            rowclocks, frameclocks, freqs = found
        if algorithm == "sequential" and ngroups < 10:
            log.warning("emicorr: the sequential fit is unreliable with fewer than 10 groups "
                        "(NGROUPS = %d); the joint fit is advised", ngroups)
        clock = _emi.readout_clock(meta, shape, rowclocks, frameclocks, log)
        nphase = nints
        if algorithm == "sequential":
            if p.nints_to_phase is not None:
                nphase = max(1, min(int(p.nints_to_phase), nints))
            elif p.use_n_cycles is not None:
                longest = max(f.period for f in freqs)
                nphase = min(nints, max(1, math.ceil(
                    p.use_n_cycles * longest / (frameclocks * ngroups))))
        log.info("emicorr: %s fit of %s Hz (%s)", algorithm,
                 ", ".join(f"{f.frequency:g}" for f in freqs), ", ".join(f.name for f in freqs))
        return _EmiState(clock=clock, algorithm=algorithm, nints=nints, nints_to_phase=nphase,
                         fit_ints_separately=bool(p.fit_ints_separately),
                         frequencies=[_Frequency(freq=f) for f in freqs])

    # -- the scans ---------------------------------------------------------------------------------
    def scan_pending(self, state: _EmiState | None) -> bool:
        return state is not None and state.scanned < len(state.frequencies)

    def scan_block(self, block: RampBlock, state: _EmiState) -> bool:
        fit = state.frequencies[state.scanned]
        clock = state.clock
        period = fit.freq.period
        if fit.sums is None and fit.samples is None:
            self._start_scan(fit, state)
        first = exposure_int(block.meta, block.int_start)
        count = block.data.shape[0]
        if state.algorithm == "sequential":
            count = min(count, state.nints_to_phase - state.seen)
        for j0 in range(0, count, INTS_PER_CHUNK):
            j1 = min(count, j0 + INTS_PER_CHUNK)
            index = np.arange(first + j0, first + j1)
            ramps = block.data[j0:j1]
            if state.scanned:  # the frequencies fitted so far, removed from a copy
                ramps = ramps.copy()
                for done in state.frequencies[:state.scanned]:
                    _emi.subtract_emi(ramps, self._emi_of(done, state, index))
            starts = [clock.integration_phase(i, period) for i in index]
            if state.algorithm == "sequential":
                for ramp, start in zip(ramps, starts, strict=True):
                    fit.samples.add(ramp, clock.slot_phase(period), clock.group_phase(period),
                                    start)
            else:
                use = _emi.quiet_pixels(ramps, block.pixeldq)
                y, n = _emi.bin_ramps_by_phase(ramps, use, fit.slot_bin, fit.wave.n)
                for k, i in enumerate(index):
                    if state.fit_ints_separately:
                        one = _emi.JointSums(fit.wave.n, clock.ngroups)
                        one.add(0.0, y[k], n[k])
                        fit.per_int[int(i)] = _emi.fit_joint(one, fit.templates)
                    else:
                        fit.sums.add(starts[k], y[k], n[k])
            state.seen += j1 - j0
        return not (state.algorithm == "sequential" and state.seen >= state.nints_to_phase)

    def _start_scan(self, fit: _Frequency, state: _EmiState) -> None:
        clock = state.clock
        if state.algorithm == "sequential":
            fit.samples = _emi.SequentialSamples()
            return
        fit.wave = _emi.PeriodicWave(fit.freq.waveform)
        slot_bin = np.floor(clock.slot_phase(fit.freq.period) * fit.wave.n).astype(np.int64)
        slot_bin = np.minimum(slot_bin, fit.wave.n - 1)
        slot_bin[:, [s for s in _emi.EXCLUDED_SLOTS if s < clock.nslots]] = -1
        fit.slot_bin = slot_bin
        fit.sums = _emi.JointSums(fit.wave.n, clock.ngroups)
        fit.templates = _emi.JointTemplates(fit.wave, clock.ngroups,
                                            clock.group_phase(fit.freq.period))

    def end_scan(self, state: _EmiState) -> None:
        fit = state.frequencies[state.scanned]
        if state.algorithm == "sequential":
            fit.lookup = _emi.sequential_lookup(fit.samples, fit.freq, self.params.nbins,
                                                self.params.scale_reference, log)
            log.info("emicorr: %s Hz phased from %d integration(s), peak-to-peak %.3g DN",
                     f"{fit.freq.frequency:g}", state.seen, float(np.ptp(fit.lookup)))
            fit.samples = None
        elif state.fit_ints_separately:
            amps = [a for _, a in fit.per_int.values()]
            log.info("emicorr: %s Hz fitted per integration, amplitudes %.3g to %.3g",
                     f"{fit.freq.frequency:g}", min(amps), max(amps))
        else:
            fit.phase, fit.amplitude = _emi.fit_joint(fit.sums, fit.templates)
            log.info("emicorr: %s Hz amplitude %.4g, phase %.4f", f"{fit.freq.frequency:g}",
                     fit.amplitude, fit.phase)
        fit.sums = fit.templates = None  # the fit's inputs; the correction needs the wave only
        state.scanned += 1
        state.seen = 0

    # -- the correction ----------------------------------------------------------------------------
    def _emi_of(self, fit: _Frequency, state: _EmiState, index: np.ndarray) -> np.ndarray:
        """EMI of one frequency at every read of integrations ``index`` (0-based in the
        exposure), float64 (len(index), ngroups, ny, nx // 4)."""
        clock = state.clock
        period = fit.freq.period
        groups = np.arange(clock.ngroups, dtype=np.float64)[:, None, None]
        frame = clock.slot_phase(period)[None] + groups * clock.group_phase(period)
        if state.algorithm == "sequential":
            out = np.empty((len(index),) + frame.shape)
            for k, i in enumerate(index):
                start = clock.integration_phase(int(i), period)
                where = np.floor(np.mod(frame + start, 1.0) * period).astype(np.int64)
                out[k] = fit.lookup[np.minimum(where, fit.lookup.size - 1)]
            return out
        if state.fit_ints_separately:
            shift = np.array([fit.per_int.get(int(i), (0.0, 0.0))[0] for i in index])
            amplitude = np.array([fit.per_int.get(int(i), (0.0, 0.0))[1] for i in index])
        else:
            shift = np.array([clock.integration_phase(int(i), period) for i in index]) + fit.phase
            amplitude = np.full(len(index), fit.amplitude)
        out = np.empty((len(index),) + frame.shape)
        for g in range(clock.ngroups):  # a group at a time: temporaries stay in cache
            out[:, g] = fit.wave(frame[g][None] + shift[:, None, None])
            out[:, g] *= amplitude[:, None, None]
        return out

    def process_block(self, block: RampBlock, state: _EmiState | None) -> None:
        if state is None:
            return
        first = exposure_int(block.meta, block.int_start)
        for j0 in range(0, block.data.shape[0], INTS_PER_CHUNK):
            j1 = min(block.data.shape[0], j0 + INTS_PER_CHUNK)
            index = np.arange(first + j0, first + j1)
            for fit in state.frequencies:
                _emi.subtract_emi(block.data[j0:j1], self._emi_of(fit, state, index))

    def release(self, state):
        return state is not None

    def finish(self, model, applied) -> None:
        self.record_status(model, "COMPLETE" if applied else "SKIPPED")
