"""NIRSpec IRS2 reference-pixel correction (jwpipe.irs2): oracle parity, truth, errors.

The oracle (``tests/data/irs2/*.npz``) was made by ``tests/_reference/make_irs2_oracle.py`` with
jwst 3.0.0 from the synthetic exposures of ``tests/_irs2_fixtures.py``; the truth tests need no
oracle. Every case is a full frame (the reference weights fix the series length), so the cases
use two or three groups.
"""

from __future__ import annotations

from pathlib import Path

import _irs2_fixtures as fx
import numpy as np
import pytest

from jwpipe import dq
from jwpipe.errors import DataShapeError, ReferenceFileError
from jwpipe.irs2 import (
    Irs2Reference,
    correct_irs2,
    flag_bad_refpix,
    irs2_subtract_reference,
    odd_columns,
    read_irs2_reference,
    replace_bad_refpix,
)
from jwpipe.steps.refpix import irs2_top_bottom_correction

ORACLE = Path(__file__).parent / "data" / "irs2"
CASES = fx.ORACLE_CASES


def reference_of(ref: dict) -> Irs2Reference:
    return Irs2Reference(ref["alpha"], ref["beta"], ref["output"], ref["odd_even"], ref["mask"])


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory) -> Path:
    """The oracle's synthetic reference, written as a REFPIX FITS file (93 MB, once)."""
    path = tmp_path_factory.mktemp("irs2") / "irs2_refpix.fits"
    fx.write_reference_fits(path, fx.make_reference())
    return path


def normal_rows(detector: str) -> np.ndarray:
    """DMS rows of the normal pixels, worked out from the fixture's own readout model."""
    _, _, kind = fx.detector_layout()
    x = np.flatnonzero(kind == 1)
    return np.sort(x if detector == "NRS1" else fx.LENGTH - 1 - x)


# -- reading the reference file ---------------------------------------------------------------

def test_read_reference_round_trip(reference_file):
    ref = fx.make_reference()
    got = read_irs2_reference(reference_file)
    assert got.alpha.dtype == np.complex64 and got.alpha.shape == (4, fx.SERIES)
    np.testing.assert_array_equal(got.alpha, ref["alpha"])
    np.testing.assert_array_equal(got.beta, ref["beta"])
    np.testing.assert_array_equal(got.output, ref["output"])
    np.testing.assert_array_equal(got.odd_even, ref["odd_even"])
    np.testing.assert_array_equal(got.mask, ref["mask"])


# -- parity with jwst ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_jwst_oracle(case, reference_file):
    """irs2_subtract_reference against jwst's flag / replace / correct_model.

    Exact: PIXELDQ after flagging, the replaced rows, the output PIXELDQ and GROUPDQ, and where
    the output is NaN. Output values: within 2 float32 spacings of the oracle value plus
    1e-5 DN. Everything before and after the Fourier transforms reproduces jwst's float32
    roundings to the bit (the straight-line fits too, since a sample a fit cancels exactly
    becomes a gap); the transforms are not bitwise the same (jwst: complex single-precision
    FFTs of the whole spectrum; jwpipe: real FFTs with Hermitian weights), a ~1e-7 relative
    difference of the spectra, ~1e-5 DN on corrections of tens of DN. At ~1e4 DN that is at
    most one rounding step of the output (2**-10 DN), which is what is seen; the 1e-5 DN covers
    the small values of the preserved reference pixels. Row and column means: within 2e-4 DN
    (means of 2048 such roundings).

    ``nrs2_mean``: with the refpix step's ``irs2_mean_subtraction``, the top/bottom correction
    (``jwpipe.steps.refpix.irs2_top_bottom_correction``) between flagging and replacing, as
    jwst runs it. jwst sums its top/bottom means of ~1e4 DN in float32 (here float64), a few
    float32 spacings of 1e4 DN, which stay in the output: 4 of them (0.0039 DN) are added to
    every tolerance (measured: 0.0012 DN at most).
    """
    detector, nints, ngroups, preserve, count = CASES[case]
    mean_subtraction = case.endswith("_mean")
    oracle = np.load(ORACLE / f"{case}.npz")
    exposure = fx.make_exposure(detector, ngroups=ngroups, nints=nints)
    ref = fx.make_reference()
    checksum = fx.checksum(exposure["data"], exposure["pixeldq"], exposure["groupdq"])
    assert checksum == str(oracle["input_sha256"]), (
        "the regenerated synthetic exposure differs from the one the oracle was made from; "
        "remake it with tests/_reference/make_irs2_oracle.py")
    assert fx.checksum(ref["alpha"], ref["beta"], ref["output"], ref["odd_even"],
                       ref["mask"]) == str(oracle["reference_sha256"])

    data, pixeldq, groupdq = exposure["data"], exposure["pixeldq"], exposure["groupdq"]
    for a in (data, pixeldq, groupdq):
        a.flags.writeable = False  # inputs are read, never written

    flagged = flag_bad_refpix(data, pixeldq, detector)
    np.testing.assert_array_equal(flagged, oracle["flagged_pixeldq"])
    corrected = data
    if mean_subtraction:
        corrected = data.copy()
        irs2_top_bottom_correction(corrected.reshape(-1, *data.shape[-2:]), flagged,
                                   odd_columns(data.shape[-2]), *fx.AXES[detector])
    rows = oracle["replaced_rows"]
    replaced = replace_bad_refpix(corrected, flagged, detector)
    if mean_subtraction:  # jwst's float32 means: within 2 roundings of ~1e4 DN
        np.testing.assert_allclose(replaced[:, :, rows, ::16], oracle["replaced"], rtol=0,
                                   atol=2 * 2.0**-10)
    else:
        np.testing.assert_array_equal(replaced[:, :, rows, ::16], oracle["replaced"])
    del replaced

    # the threaded path for one case, big-endian input (as FITS gives it) for another
    nthreads = 2 if case == "nrs2" else 1
    given = data.astype(">f4") if case == "nrs1_preserve" else data
    if mean_subtraction:
        result = correct_irs2(corrected, flagged, groupdq, read_irs2_reference(reference_file),
                              detector, preserve_refpix=preserve, replace_flagged=True)
        # the top/bottom correction matters here: without it the output is off by far more
        plain = irs2_subtract_reference(data, pixeldq, groupdq,
                                        read_irs2_reference(reference_file), detector)
        r, c = fx.sample_positions(2048, 2048, count)
        shift = np.abs(plain.data[:, :, r, c] - oracle["values"])
        print("output shift without the top/bottom correction: median %.3g, max %.3g DN"
              % (np.nanmedian(shift), np.nanmax(shift)))
        assert np.nanmedian(shift) > 100 * np.spacing(np.float32(1e4))
    else:
        result = irs2_subtract_reference(given, pixeldq, groupdq,
                                         read_irs2_reference(reference_file), detector,
                                         preserve_refpix=preserve, nthreads=nthreads)
    out = result.data
    rows_out = fx.LENGTH if preserve else 2048
    assert out.shape == (nints, ngroups, rows_out, 2048) and out.dtype == np.float32
    r, c = fx.sample_positions(rows_out, 2048, count)
    got, want = out[:, :, r, c], oracle["values"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = np.isfinite(want)
    tolerance = 2 * np.spacing(np.abs(want[ok])) + 1e-5
    if mean_subtraction:
        # jwst's top/bottom means are float32 sums of ~2500 values of ~1e4 DN: each is off by
        # up to a few float32 spacings of 1e4 DN (2**-10 DN), which the output keeps
        tolerance += 4 * np.spacing(np.float32(1e4))
    excess = np.abs(got[ok].astype(np.float64) - want[ok]) - tolerance
    assert excess.max() <= 0, f"worst excess over tolerance {excess.max():.3g} DN"
    mean_atol = 2e-4 + (4 * np.spacing(np.float32(1e4)) if mean_subtraction else 0.0)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(np.nanmean(out.astype(np.float64), axis=-1),
                                   oracle["row_mean"], rtol=0, atol=mean_atol)
        np.testing.assert_allclose(np.nanmean(out.astype(np.float64), axis=-2),
                                   oracle["col_mean"], rtol=0, atol=mean_atol)
    np.testing.assert_array_equal(result.pixeldq, oracle["pixeldq"])
    np.testing.assert_array_equal(result.groupdq, oracle["groupdq"])
    assert fx.checksum(data, pixeldq, groupdq) == checksum


# -- truth: what the correction removes ---------------------------------------------------------

def clean_exposure(ngroups: int, seed: int):
    """Bias, a ramp on the illuminated normal pixels and 1 DN white noise, detector orientation
    (ngroups, 2048, 3200), float64; and the read time of each sample (2048, 3200)."""
    rng = np.random.default_rng(seed)
    section, slot, kind = fx.detector_layout()
    y = np.arange(fx.NY)[:, None]
    bias = 10000.0 + 30.0 * np.sin(np.arange(fx.LENGTH) / 200.0)[None, :] + 0 * y
    rate = np.where((kind == 1)[None, :] & (y >= 4) & (y < fx.NY - 4), 10.0, 0.0)
    frames = np.stack([bias + rate * (g + 1) + rng.normal(0.0, 1.0, bias.shape)
                       for g in range(ngroups)])
    return frames, y * fx.ROW + slot[None, :], section, kind


def group_difference_rms(result, truth_dms, rows):
    """rms over pixels of (out[1] - out[0]) - (truth[1] - truth[0]) (the ramp mean that the
    correction puts back is common to both groups)."""
    diff = (result[0, 1].astype(np.float64) - result[0, 0]) - (truth_dms[1] - truth_dms[0])[rows]
    return np.sqrt(np.mean(diff ** 2))


@pytest.mark.parametrize("detector", ["NRS1", "NRS2"])
def test_correlated_noise_is_removed(detector):
    """Noise common in time to the reference output and the amplifiers goes with alpha = 1.

    With alpha = 1 and beta = 0 the correction is the gap-filled reference output read at the
    same time; its normal-pixel slots are kept as read, so the injected series cancels to the
    white noise of the two reads (1 DN each, sqrt(2) * sqrt(2) DN on a group difference) plus
    the small mismatch of the straight-line fits. Injected: 1/f noise + sinusoid, 20 DN rms per
    group (28 DN on the difference). Bound: residual rms < 2.5 DN, under 10 % of the injected
    rms; without the correction it would be ~28 DN.
    """
    frames, time, _, kind = clean_exposure(2, seed=11)
    rng = np.random.default_rng(12)
    noise = np.stack([fx.correlated_series(rng, 20.0)[time] for _ in range(2)])
    data = fx.to_dms((frames + noise)[None].astype(np.float32), detector)
    truth = fx.to_dms(frames, detector)
    shape = data.shape
    result = correct_irs2(data, np.zeros(shape[-2:], np.uint32), np.zeros(shape, np.uint8),
                          reference_of(fx.simple_reference(1.0, 0.0)), detector)
    rows = normal_rows(detector)
    injected = np.sqrt(np.mean((noise[1] - noise[0]) ** 2))
    residual = group_difference_rms(result.data, truth, rows)
    assert injected > 25
    assert residual < 2.5, (residual, injected)


def test_amplifier_drift_seen_by_interleaved_pixels_is_removed():
    """Per-amplifier, per-group offsets and slow drifts (20 cycles per frame) seen alike by the
    normal and interleaved reference pixels are removed through beta.

    beta = 712 / 256 below 1000 cycles per frame (the interleaved series carries values in 256
    of every 712 slots; its sampling pattern repeats every detector row, 2048 cycles per frame,
    so a low-pass below that returns the slow signal itself), alpha = 0. Offsets of up to 50 DN
    and drifts of 30 DN amplitude; the residual on a group difference is bounded by 2.5 DN (the
    1 DN white noise of the normal pixels plus that of the averaged reference pixels). With
    beta = 0 the drift stays (only the straight-line fit acts): residual > 10 DN, so the test
    sees the interleaved pixels at work.
    """
    frames, time, section, kind = clean_exposure(2, seed=21)
    rng = np.random.default_rng(22)
    phase = 2 * np.pi * 20 * time / fx.SERIES
    drift = np.zeros_like(frames)
    for g in range(2):
        for amp in range(1, 5):
            cols = section == amp
            drift[g][:, cols] = (rng.uniform(-50, 50)
                                 + rng.uniform(10, 30) * np.sin(phase[:, cols] + rng.uniform(0, 6)))
    data = fx.to_dms((frames + drift)[None].astype(np.float32), "NRS1")
    truth = fx.to_dms(frames, "NRS1")
    shape = data.shape
    pixeldq, groupdq = np.zeros(shape[-2:], np.uint32), np.zeros(shape, np.uint8)
    low_pass = fx.simple_reference(0.0, 0.0)
    f = np.minimum(np.arange(fx.SERIES), fx.SERIES - np.arange(fx.SERIES))
    low_pass["beta"][:] = np.where(f < 1000, 712 / 256, 0).astype(np.complex64)
    rows = normal_rows("NRS1")

    corrected = correct_irs2(data, pixeldq, groupdq, reference_of(low_pass), "NRS1")
    uncorrected = correct_irs2(data, pixeldq, groupdq, reference_of(fx.simple_reference(0, 0)),
                               "NRS1")
    assert group_difference_rms(corrected.data, truth, rows) < 2.5
    assert group_difference_rms(uncorrected.data, truth, rows) > 10

    # shapes, and the interleaved reference pixels stripped from PIXELDQ and GROUPDQ
    pixeldq = np.zeros(shape[-2:], np.uint32)
    pixeldq[np.arange(fx.LENGTH), 0] = np.arange(fx.LENGTH)  # each row tagged with its number
    groupdq = np.zeros(shape, np.uint8)
    groupdq[..., 1] = (np.arange(fx.LENGTH) % 251).astype(np.uint8)
    result = correct_irs2(data, pixeldq, groupdq, reference_of(low_pass), "NRS1")
    assert result.data.shape == (1, 2, 2048, 2048) and result.data.dtype == np.float32
    assert result.pixeldq.shape == (2048, 2048) and result.pixeldq.dtype == np.uint32
    assert result.groupdq.shape == (1, 2, 2048, 2048) and result.groupdq.dtype == np.uint8
    np.testing.assert_array_equal(result.pixeldq[:, 0], rows)
    np.testing.assert_array_equal(result.groupdq[0, 1, :, 1], rows % 251)

    preserved = correct_irs2(data, pixeldq, groupdq, reference_of(low_pass), "NRS1",
                             preserve_refpix=True)
    assert preserved.data.shape == shape
    np.testing.assert_array_equal(preserved.pixeldq, pixeldq)
    np.testing.assert_array_equal(preserved.groupdq, groupdq)
    # the normal pixels are the same as when stripped
    np.testing.assert_array_equal(preserved.data[:, :, rows], result.data)


def test_flagging_marks_whole_rows_of_outlying_pairs():
    """A noisy interleaved pair is flagged (both rows, every column, BAD_REF_PIXEL and
    DO_NOT_USE); a flag already set in one column spreads to its row; only reference rows are
    flagged (a 3-sigma one-sided cut on 64 pairs per section may catch a fluke or two, so
    no exact count); replacing averages the pairs 20 rows away, leaving other rows alone."""
    frames, _, _, kind = clean_exposure(2, seed=31)
    data = fx.to_dms(frames[None].astype(np.float32), "NRS1")
    ref_x = np.flatnonzero(kind == 2)
    data[..., ref_x[40:42], :] += np.random.default_rng(0).normal(0, 50, (1, 2, 2, 2048)
                                                                 ).astype(np.float32)
    pixeldq = np.zeros(data.shape[-2:], np.uint32)
    pixeldq[ref_x[100], 7] = dq.BAD_REF_PIXEL
    flagged = flag_bad_refpix(data, pixeldq, "NRS1")
    bad_rows = np.flatnonzero(np.any(flagged, axis=1))
    assert set(ref_x[[40, 41, 100]]) <= set(bad_rows)
    assert np.all(flagged[bad_rows] == dq.BAD_REF_PIXEL | dq.DO_NOT_USE)
    assert np.all(kind[bad_rows] != 1) and len(bad_rows) <= 9

    replaced = replace_bad_refpix(data, flagged, "NRS1")
    period = 20
    for row in ref_x[40:42]:
        assert not np.any(flagged[[row - period, row + period]])
        want = (data[..., row - period, :] + data[..., row + period, :]) / np.float32(2)
        np.testing.assert_array_equal(replaced[..., row, :], want)
    untouched = np.setdiff1d(np.arange(fx.LENGTH), bad_rows)
    np.testing.assert_array_equal(replaced[..., untouched, :], data[..., untouched, :])


# -- errors -------------------------------------------------------------------------------------

def test_reference_with_wrong_row_count(tmp_path):
    path = tmp_path / "short.fits"
    fx.write_reference_fits(path, {k: (v[:, :500] if v.ndim == 2 else v)
                                   for k, v in fx.simple_reference().items()}, nrows=1000)
    with pytest.raises(ReferenceFileError, match=r"short\.fits.*IRS2 column alpha_0.*1000 rows"):
        read_irs2_reference(path)


def test_reference_without_irs2_extension(tmp_path):
    from astropy.io import fits

    path = tmp_path / "no_irs2.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="OUTPUT", format="I", array=np.array([1]))], name="DQ")]
    ).writeto(path)
    with pytest.raises(ReferenceFileError, match=r"no_irs2\.fits.*extension IRS2"):
        read_irs2_reference(path)


def test_reference_with_missing_column(tmp_path):
    from astropy.io import fits

    path = tmp_path / "no_beta.fits"
    cols = [fits.Column(name=n, format="E", array=np.zeros(4, np.float32))
            for n in ("alpha_0", "alpha_1", "alpha_2", "alpha_3", "beta_0")]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="IRS2")]
                 ).writeto(path)
    with pytest.raises(ReferenceFileError, match=r"no_beta\.fits.*IRS2.*column beta_1"):
        read_irs2_reference(path)


def test_missing_reference_file(tmp_path):
    with pytest.raises(ReferenceFileError, match="nothing.fits"):
        read_irs2_reference(tmp_path / "nothing.fits")


def test_not_nirspec_and_bad_shapes():
    data = np.zeros((1, 1, fx.LENGTH, 2048), np.float32)
    pixeldq = np.zeros((fx.LENGTH, 2048), np.uint32)
    groupdq = np.zeros(data.shape, np.uint8)
    ref = reference_of(fx.simple_reference())
    with pytest.raises(DataShapeError, match="NRCA1"):
        irs2_subtract_reference(data, pixeldq, groupdq, ref, "NRCA1")
    with pytest.raises(DataShapeError, match="NRCA1"):
        flag_bad_refpix(data, pixeldq, "NRCA1")
    with pytest.raises(DataShapeError):
        correct_irs2(data[..., :2048, :], pixeldq[:2048], groupdq[..., :2048, :], ref, "NRS1")
    with pytest.raises(DataShapeError):
        correct_irs2(data, pixeldq[:100], groupdq, ref, "NRS1")
    short = Irs2Reference(ref.alpha[:, :10], ref.beta[:, :10], ref.output, ref.odd_even,
                          ref.mask, name="short.fits")
    with pytest.raises(ReferenceFileError, match="short.fits"):
        correct_irs2(data, pixeldq, groupdq, short, "NRS1")
