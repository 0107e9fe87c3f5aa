"""Synthetic MIRI EMI: the waveforms, the EMICORR reference that describes them, and the noise
they add to simulated reads.

Each frequency's waveform is one period of a fixed shape (a fundamental and two harmonics,
peak-to-peak 2). An exposure simulated with ``emi={"Hz390": (amplitude, phase)}`` gets
``amplitude * waveform(t / period + phase)`` DN added to every read (reference pixels too), ``t``
the read's time in 10 us pixel clocks from the exposure's first read: the four outputs read
columns ``4k .. 4k + 3`` of a row together at ``k`` clocks into the row (one clock per read in the
FAST patterns), rows start ``rowclocks`` apart, a frame lasts ``ny * rowclocks`` plus 7 clocks
per detector row outside the subarray, an integration ``ngroups`` frames plus, in FASTR1, a reset
frame of ``frameclocks``.
"""

from __future__ import annotations

import numpy as np

from ..steps._emi import SUBARRAY_CLOCKS, clock_name, read_speed

__all__ = ["EMI_FREQUENCIES", "waveform_samples", "emicorr_tree", "emi_reads"]

#: Frequencies (Hz) of the synthetic reference, by the names the flight reference uses.
EMI_FREQUENCIES = {"Hz390": 390.625, "Hz218a": 218.52055, "Hz164": 164.9305, "Hz10": 10.039216}
#: Frequencies the synthetic reference corrects per subarray (every detector and read speed):
#: those whose phase moves well between groups. (390.625 Hz is in phase with the SUB256,
#: BRIGHTSKY and FULL frame rates, the same in every group, which leaves slopes alone; 218.5 Hz
#: nearly so with SUB128 and BRIGHTSKY, 164.9 Hz with SUB64.)
_CASES = {"SUB256": ["Hz218a"], "SUB128": ["Hz390", "Hz164"], "SUB64": ["Hz390", "Hz218a"],
          "BRIGHTSKY": ["Hz164"], "FULL_FAST": ["Hz10"], "FULL_SLOW": ["Hz10"],
          "SLITLESSPRISM": ["Hz390", "Hz10"], "MASK1065": ["Hz390"], "MASK1140": ["Hz390"],
          "MASK1550": ["Hz390"], "MASKLYOT": ["Hz390"]}
_MIRI_DETECTORS = ("MIRIMAGE", "MIRIFULONG", "MIRIFUSHORT")


def _shape(phase: np.ndarray) -> np.ndarray:
    x = 2.0 * np.pi * phase
    return np.sin(x) + 0.45 * np.sin(2.0 * x + 0.7) + 0.2 * np.cos(3.0 * x)


_PEAK_TO_PEAK = float(np.ptp(_shape(np.linspace(0.0, 1.0, 100001))))


def waveform(phase) -> np.ndarray:
    """The synthetic EMI shape at ``phase`` (period 1), peak-to-peak 2, float64."""
    return _shape(np.asarray(phase, np.float64)) * (2.0 / _PEAK_TO_PEAK)


def waveform_samples(nsamples: int = 256) -> np.ndarray:
    """One period of :func:`waveform`, sample ``m`` at phase ``(m + 0.5) / nsamples``."""
    return waveform((np.arange(nsamples) + 0.5) / nsamples)


def emicorr_tree(meta: dict, nsamples: int = 256) -> dict:
    """The ASDF tree of the synthetic EMICORR reference (the layout of the flight file:
    ``frequencies`` and ``subarray_cases``)."""
    samples = waveform_samples(nsamples).astype(np.float32)
    freqs = {name: {"frequency": value, "phase_amplitudes": samples.copy()}
             for name, value in EMI_FREQUENCIES.items()}
    cases = {}
    for name, names in _CASES.items():
        rowclocks, frameclocks = SUBARRAY_CLOCKS[name]
        cases[name] = {"rowclocks": rowclocks, "frameclocks": frameclocks,
                       "freqs": {"FAST": list(names),
                                 "SLOW": {d: list(names) for d in _MIRI_DETECTORS}}}
    return {"meta": meta, "frequencies": freqs, "subarray_cases": cases}


def emi_reads(components: dict, subarray: str, readpatt: str, ngroups: int, ny: int, nx: int,
              index: int) -> np.ndarray:
    """EMI (DN) at every read of integration ``index`` (0-based in the exposure).

    Parameters
    ----------
    components : dict
        Frequency name (a key of :data:`EMI_FREQUENCIES`) or value in Hz -> (amplitude in DN,
        phase 0 to 1 at the exposure's first read).
    subarray, readpatt : str
        SUBARRAY and READPATT (FAST or FASTR1; SLOW reads are 9 clocks).

    Returns
    -------
    ndarray of shape (ngroups, ny, nx), float32
    """
    patt = readpatt.upper()
    rowclocks, frameclocks = SUBARRAY_CLOCKS[clock_name(subarray, patt)]
    per_read = 9 if read_speed(patt) == "SLOW" else 1
    frame = ny * rowclocks + (1024 - ny) * 7
    integration = ngroups * frame + (frameclocks if patt.endswith("R1") else 0)
    periods = [(amplitude, phase, 1.0 / ((EMI_FREQUENCIES[name] if isinstance(name, str)
                                           else float(name)) * 10e-6))
               for name, (amplitude, phase) in components.items()]
    # Integer clocks from the exposure's first read (float64 is exact below 2**53), a group at
    # a time to keep the temporaries small.
    within = (np.arange(ny, dtype=np.int64)[:, None] * rowclocks
              + (np.arange(nx, dtype=np.int64) // 4)[None, :] * per_read)
    out = np.zeros((ngroups, ny, nx), np.float32)
    for g in range(ngroups):
        t = (np.int64(index) * integration + g * frame + within).astype(np.float64)
        for amplitude, phase, period in periods:
            out[g] += (amplitude * waveform(np.mod(t / period, 1.0) + phase)).astype(np.float32)
    return out
