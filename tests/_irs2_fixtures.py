"""Deterministic synthetic NIRSpec IRS2 exposures and IRS2 reference files (pure numpy).

Shared by ``tests/test_irs2.py`` (main environment) and ``tests/_reference/make_irs2_oracle.py``
(run with the jwst venv), so both see the same input. Nothing here imports jwpipe or jwst: the
readout timing is worked out independently of both, as a cross-check.

Every generated value is rounded to 1/8 DN, so that last-bit differences of ``sin``/FFT between
machines cannot change the input; :func:`checksum` lets a test verify it regenerated exactly the
input an oracle was made from.
"""

from __future__ import annotations

import hashlib

import numpy as np

NY = 2048  # detector rows
SECTION = 640  # samples per section (reference output or amplifier) along the readout
LENGTH = 5 * SECTION  # 3200
ROW = 712  # time slots per detector row
SERIES = ROW * NY
SCIPIX_N, REFPIX_R = 16, 4

BAD_REF_PIXEL = 1 << 17
DO_NOT_USE = 1
DEAD = 1 << 10
SATURATED = 2

#: The jwst oracle's cases (``tests/_reference/make_irs2_oracle.py``, ``tests/test_irs2.py``):
#: name -> (detector, nints, ngroups, preserve_refpix, sample count). ``_mean`` cases run the
#: refpix step's irs2_mean_subtraction first.
ORACLE_CASES = {
    "nrs1": ("NRS1", 1, 3, False, 16000),
    "nrs2": ("NRS2", 2, 2, False, 12000),
    "nrs1_preserve": ("NRS1", 1, 2, True, 8000),
    "nrs2_mean": ("NRS2", 1, 2, False, 8000),
}
#: FASTAXIS, SLOWAXIS of the NIRSpec detectors
AXES = {"NRS1": (2, 1), "NRS2": (-2, -1)}


def readout_slots() -> tuple[np.ndarray, np.ndarray]:
    """Time slot and kind of each sample of a section, in readout order.

    The amplifier reads 8 normal pixels, then 32 times: one idle slot (the jump out), 4
    reference pixels, one idle slot (the jump back), 16 normal pixels (8 the last time); 8 idle
    slots end the row.

    Returns
    -------
    slot : ndarray of int64, shape (640,)
    is_ref : ndarray of bool, shape (640,)
    """
    slot, is_ref = [], []
    t = 0
    for _ in range(SCIPIX_N // 2):
        slot.append(t), is_ref.append(False)
        t += 1
    groups = 512 // SCIPIX_N
    for g in range(groups):
        t += 1  # jump out
        for _ in range(REFPIX_R):
            slot.append(t), is_ref.append(True)
            t += 1
        t += 1  # jump back
        for _ in range(SCIPIX_N if g < groups - 1 else SCIPIX_N // 2):
            slot.append(t), is_ref.append(False)
            t += 1
    assert len(slot) == SECTION and t + 8 == ROW
    return np.array(slot), np.array(is_ref)


def detector_layout() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per detector column x (0..3199, detector orientation): section, time slot, kind.

    Returns
    -------
    section : int64 (3200,)
        0 for the reference output, 1-4 for the amplifiers.
    slot : int64 (3200,)
        Time slot within the detector row (sections 0, 2, 4 are read towards lower x).
    kind : int8 (3200,)
        0 reference output, 1 normal pixel, 2 interleaved reference pixel.
    """
    slot_q, ref_q = readout_slots()
    x = np.arange(LENGTH)
    section = x // SECTION
    within = x % SECTION
    q = np.where(section % 2 == 0, SECTION - 1 - within, within)
    kind = np.where(section == 0, 0, np.where(ref_q[q], 2, 1)).astype(np.int8)
    return section, slot_q[q], kind


def to_dms(frames: np.ndarray, detector: str) -> np.ndarray:
    """Detector orientation (..., 2048, 3200) -> DMS orientation (..., 3200, 2048)."""
    if detector == "NRS2":
        frames = frames[..., ::-1, ::-1]
    return np.ascontiguousarray(np.swapaxes(frames, -1, -2))


def correlated_series(rng: np.random.Generator, rms: float) -> np.ndarray:
    """A 1/f-like noise series over one frame's read time plus a sinusoid, float64 (SERIES,)."""
    white = rng.standard_normal(SERIES)
    spectrum = np.fft.rfft(white)
    f = np.arange(spectrum.size, dtype=np.float64)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0
    series = np.fft.irfft(spectrum, n=SERIES)
    series *= rms / series.std()
    t = np.arange(SERIES)
    return series + 0.3 * rms * np.sin(2 * np.pi * t / 37.3 + rng.uniform(0, 2 * np.pi))


def _quantise(a: np.ndarray) -> np.ndarray:
    return (np.round(np.asarray(a, np.float64) * 8) / 8).astype(np.float32)


def make_exposure(detector: str = "NRS1", ngroups: int = 3, nints: int = 1,
                  seed: int = 20170101) -> dict:
    """A synthetic IRS2 exposure with every feature the correction handles.

    Bias ~10000 DN with structure along both axes and offsets per section; a ramp on the
    illuminated normal pixels (detector rows 4-2043); white noise; a correlated noise series,
    the same in time for the reference output and (scaled) the four amplifiers, different in each
    group; interleaved reference pairs that are noisy, offset or split (for the flagging), a
    row and a normal row flagged BAD_REF_PIXEL beforehand, a reference-output row constant over
    the ramp (a gap for the correction), NaN in a few normal pixels, DEAD pixels and SATURATED
    groups.

    Returns
    -------
    dict
        ``data`` float32 (nints, ngroups, 3200, 2048), ``pixeldq`` uint32 (3200, 2048),
        ``groupdq`` uint8 (nints, ngroups, 3200, 2048), all in DMS orientation, and
        ``detector``.
    """
    rng = np.random.default_rng([seed, 1 if detector == "NRS1" else 2])
    section, slot, kind = detector_layout()
    y = np.arange(NY)[:, None]
    x = np.arange(LENGTH)[None, :]

    bias = (10000.0 + 150.0 * np.sin(x / 310.0) + 80.0 * np.cos(y / 170.0)
            + np.array([40.0, -25.0, 15.0, 60.0, -45.0])[section][None, :]
            + 6.0 * (x % 2))
    bias = bias + rng.normal(0.0, 20.0, (NY, LENGTH))  # fixed pattern
    rate = np.where((kind == 1)[None, :] & (y >= 4) & (y < NY - 4),
                    rng.uniform(2.0, 40.0, (NY, LENGTH)), 0.0)
    amp_gain = np.array([1.0, 1.05, 0.95, 1.1, 0.9])[section]
    time_index = (y * ROW + slot[None, :])  # (2048, 3200) read time of every sample

    # bad interleaved reference pairs: (section, group k, pair 0/1, kind)
    ref_x = np.flatnonzero(kind == 2)
    pairs = ref_x.reshape(-1, 2)
    chosen = rng.choice(len(pairs), size=12, replace=False)
    noisy, offset, split = chosen[:4], chosen[4:8], chosen[8:12]

    data = np.empty((nints, ngroups, NY, LENGTH), np.float32)
    for i in range(nints):
        drift = rng.normal(0.0, 30.0, (ngroups, 5))  # per group and section
        for g in range(ngroups):
            frame = bias + rate * (g + 1) + drift[g][section][None, :]
            frame = frame + rng.normal(0.0, 3.0, (NY, LENGTH))
            frame = frame + amp_gain[None, :] * correlated_series(rng, 12.0)[time_index]
            for p in pairs[noisy]:
                frame[:, p] += rng.normal(0.0, 60.0, (NY, 2))
            for p in pairs[offset]:
                frame[:, p] += 400.0
            for p in pairs[split]:
                frame[:, p[1]] += 300.0 * (-1) ** np.arange(NY)
            data[i, g] = _quantise(frame)
        data[i, :, :, 37] = 12345.0  # reference output column constant over the ramp: a gap
    # NaN in some illuminated normal pixels (not in the slope-fit rows)
    normal_x = np.flatnonzero(kind == 1)
    nan_y = rng.integers(100, NY - 100, 5)
    nan_x = rng.choice(normal_x, 5)
    data[:, :, nan_y, nan_x] = np.nan

    pixeldq = np.zeros((NY, LENGTH), np.uint32)
    pre_flagged = pairs[rng.choice(np.setdiff1d(np.arange(len(pairs)), chosen), 3,
                                   replace=False)]
    pixeldq[17, pre_flagged[0, 0]] |= BAD_REF_PIXEL  # one pixel of the row flags the row
    pixeldq[:, pre_flagged[1]] |= BAD_REF_PIXEL
    pixeldq[300:310, pre_flagged[2, 1]] |= BAD_REF_PIXEL
    pixeldq[5, normal_x[700]] |= BAD_REF_PIXEL  # a normal row (jwst replaces it too)
    # half of a pair that the reference DQ table of make_reference marks too (OUTPUT 3,
    # ODD_EVEN 2, bit 13: x = 3 * 640 + 8 + 13 * 20 + 2)
    pixeldq[:, 2190] |= BAD_REF_PIXEL
    dead = rng.integers(0, NY, 40), rng.integers(0, LENGTH, 40)
    pixeldq[dead] |= DEAD | DO_NOT_USE

    groupdq = np.zeros(data.shape, np.uint8)
    sat = rng.integers(0, NY, 200), rng.integers(0, LENGTH, 200)
    groupdq[:, -1, sat[0], sat[1]] = SATURATED | DO_NOT_USE

    return {"data": to_dms(data, detector), "pixeldq": to_dms(pixeldq, detector),
            "groupdq": to_dms(groupdq, detector), "detector": detector}


def make_reference(seed: int = 4242) -> dict:
    """Synthetic IRS2 reference weights and DQ table.

    ``alpha`` (weights of the reference output's spectrum) near -1 at low frequency rolling
    off, ``beta`` (interleaved reference pixels) a low-pass gain; both with smooth phases and a
    small part that is not Hermitian (so the real-FFT shortcut is exercised).

    Returns
    -------
    dict
        ``alpha``, ``beta`` complex64 (4, SERIES); ``output``, ``odd_even`` uint16 (8,),
        ``mask`` uint32 (8,).
    """
    rng = np.random.default_rng(seed)
    k = np.arange(SERIES)
    f = np.minimum(k, SERIES - k) / SERIES  # |frequency|, cycles per sample
    signed = np.where(k <= SERIES // 2, k, k - SERIES) / SERIES
    alpha = np.empty((4, SERIES), np.complex64)
    beta = np.empty((4, SERIES), np.complex64)
    for amp in range(4):
        a0, b0, phase = rng.uniform(0.8, 1.0), rng.uniform(1.5, 2.5), rng.uniform(-1, 1)
        alpha[amp] = (-a0 / (1 + (f / 0.05) ** 2) * np.exp(1j * phase * signed * 40)
                      + 0.02j * np.cos(2 * np.pi * signed * 3))
        beta[amp] = (b0 * np.exp(-(f / 0.004) ** 2) * np.exp(-1j * phase * signed * 90)
                     + 0.01 * np.sin(2 * np.pi * signed * 5))
    alpha = (np.round(alpha.real * 2**20) + 1j * np.round(alpha.imag * 2**20)) / 2**20
    beta = (np.round(beta.real * 2**20) + 1j * np.round(beta.imag * 2**20)) / 2**20
    output = np.array([1, 1, 2, 2, 3, 3, 4, 4], np.uint16)
    odd_even = np.array([1, 2, 1, 2, 1, 2, 1, 2], np.uint16)
    mask = np.array([1 << 0 | 1 << 5, 1 << 5 | 1 << 6, 1 << 31, 0, 1 << 12 | 1 << 13,
                     1 << 13, 1 << 20, 1 << 2 | 1 << 30], np.uint32)
    return {"alpha": alpha.astype(np.complex64), "beta": beta.astype(np.complex64),
            "output": output, "odd_even": odd_even, "mask": mask}


def simple_reference(alpha: complex = 1.0, beta: complex = 0.0) -> dict:
    """Constant weights and an empty DQ table (for truth tests)."""
    return {"alpha": np.full((4, SERIES), alpha, np.complex64),
            "beta": np.full((4, SERIES), beta, np.complex64),
            "output": np.zeros(0, np.uint16), "odd_even": np.zeros(0, np.uint16),
            "mask": np.zeros(0, np.uint32)}


def write_reference_fits(path, ref: dict, nrows: int | None = None,
                         with_dq: bool = True) -> None:
    """Write ``ref`` as an IRS2 REFPIX reference file (astropy only).

    ``nrows`` truncates the IRS2 table (to make a broken file); ``with_dq=False`` leaves out
    the DQ extension.
    """
    from astropy.io import fits

    columns = []
    for name in ("alpha", "beta"):
        for amp in range(4):
            w = ref[name][amp]
            values = np.empty(2 * w.size, np.float32)
            values[0::2], values[1::2] = w.real, w.imag
            if nrows is not None:
                values = values[:nrows]
            columns.append(fits.Column(name=f"{name}_{amp}", format="E", array=values))
    primary = fits.PrimaryHDU()
    primary.header["REFTYPE"] = "REFPIX"
    primary.header["INSTRUME"] = "NIRSPEC"
    primary.header["READPATT"] = "NRSIRS2"
    hdus = [primary, fits.BinTableHDU.from_columns(columns, name="IRS2")]
    if with_dq:
        hdus.append(fits.BinTableHDU.from_columns(
            [fits.Column(name="OUTPUT", format="I", array=ref["output"].astype(np.int16)),
             fits.Column(name="ODD_EVEN", format="I", array=ref["odd_even"].astype(np.int16)),
             fits.Column(name="MASK", format="J", bzero=2**31,
                         array=ref["mask"].astype(np.uint32))],
            name="DQ"))
    fits.HDUList(hdus).writeto(path, overwrite=True)


def checksum(*arrays) -> str:
    """sha256 over the bytes (little-endian, C order) of the arrays."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(a.dtype.newbyteorder("<").str.encode())
        h.update(np.asarray(a, a.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def sample_positions(nrows: int, ncols: int, count: int, seed: int = 7):
    """``count`` fixed (row, column) positions, int64 arrays."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, nrows, count), rng.integers(0, ncols, count)
