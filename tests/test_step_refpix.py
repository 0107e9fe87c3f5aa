"""refpix: geometry, statistics parity, synthetic truth (full frame, subarrays, MIRI), oracle."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from jwpipe import dq
from jwpipe._ext import _rowcol
from jwpipe.datamodels import RampModel
from jwpipe.errors import ConfigError
from jwpipe.steps.base import RampBlock
from jwpipe.steps.refpix import (
    RefPixStep,
    clipped_mean,
    detector_origin,
    detector_view,
    exposure_shape,
)

N = 2048
ORIENTATIONS = {  # detector: (FASTAXIS, SLOWAXIS, DMS -> detector frame as the reference does it)
    "NRCA1": (-1, 2, lambda a: a[..., :, ::-1]),
    "NRCA2": (1, -2, lambda a: a[..., ::-1, :]),
    "NRS1": (2, 1, lambda a: np.swapaxes(a, -1, -2)),
    "NRS2": (-2, -1, lambda a: np.swapaxes(a, -1, -2)[..., ::-1, ::-1]),
    "NIS": (-2, -1, lambda a: np.swapaxes(a, -1, -2)[..., ::-1, ::-1]),
}


def make_model(data, detector="NRCA1", xstart=1, ystart=1, noutputs=4, subarray=None,
               pixeldq=None):
    fast, slow, _ = ORIENTATIONS.get(detector, (1, 2, None))
    model = RampModel(np.array(data, np.float32))
    nints, ngroups, ny, nx = model.shape
    meta = model.meta
    meta.instrument.name = "MIRI" if detector.startswith("MIR") else (
        "NIRSPEC" if detector.startswith("NRS") else "NIRCAM")
    meta.instrument.detector = detector
    meta.exposure.readpatt = "RAPID"
    meta.exposure.noutputs = noutputs
    meta.exposure.nints, meta.exposure.ngroups = nints, ngroups
    meta.subarray.name = subarray or ("FULL" if (ny, nx) in ((N, N), (1024, 1032)) else "SUBX")
    meta.subarray.xstart, meta.subarray.ystart = xstart, ystart
    meta.subarray.xsize, meta.subarray.ysize = nx, ny
    meta.subarray.fastaxis, meta.subarray.slowaxis = fast, slow
    model.pixeldq = np.zeros((ny, nx), np.uint32) if pixeldq is None else pixeldq
    model.groupdq = np.zeros(model.shape, np.uint8)
    return model


def run(model, **params):
    return RefPixStep(overrides={"refpix": "N/A", "sirskernel": "N/A"}, **params).run(model)


# -- geometry ------------------------------------------------------------------------------------

@pytest.mark.parametrize("detector", sorted(ORIENTATIONS))
def test_detector_view_matches_reference_transforms(detector):
    fast, slow, transform = ORIENTATIONS[detector]
    a = np.arange(6 * 5).reshape(1, 6, 5)
    view = detector_view(a, fast, slow)
    np.testing.assert_array_equal(view, transform(a))
    assert np.shares_memory(view, a)


@pytest.mark.parametrize("detector", sorted(ORIENTATIONS))
def test_detector_origin_places_subarray(detector):
    fast, slow, _ = ORIENTATIONS[detector]
    full = np.arange(N * N).reshape(N, N)
    x0, y0, nx, ny = 1700, 30, 300, 64
    sub = full[y0:y0 + ny, x0:x0 + nx]
    row0, col0, nrows, ncols = detector_origin(x0 + 1, y0 + 1, nx, ny, fast, slow)
    np.testing.assert_array_equal(detector_view(sub, fast, slow),
                                  detector_view(full, fast, slow)[row0:row0 + nrows,
                                                                  col0:col0 + ncols])


def test_exposure_shape_from_keywords():
    model = RampModel()
    model.meta.exposure.nints, model.meta.exposure.ngroups = 3, 7
    model.meta.subarray.xsize, model.meta.subarray.ysize = 64, 32
    assert exposure_shape(model) == (3, 7, 32, 64)


# -- statistics parity -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clipped_mean_matches_scipy_sigmaclip(dtype):
    rng = np.random.default_rng(3)
    sets = rng.normal(10, 2, (20, 300)).astype(dtype)
    sets[:, :5] += 50                    # outliers
    sets[3, 7:40] = np.nan               # excluded samples
    sets[5] = 4.0                        # zero variance
    got = clipped_mean(sets)
    for i, row in enumerate(sets):
        good = row[~np.isnan(row)].astype(np.float64)
        want = stats.sigmaclip(good, 3.0, 3.0)[0].mean() if good.std() else good.mean()
        assert got[i] == pytest.approx(want, rel=1e-12)
    assert np.isnan(clipped_mean(np.full((2, 4), np.nan))).all()


def test_window_median_kernel_matches_numpy():
    rng = np.random.default_rng(4)
    padded = rng.normal(size=(3, 40, 4)).astype(np.float32)
    padded[0, 5:9, 1] = np.nan
    padded[1, 10:30, :] = np.nan                 # windows with no valid value
    out = np.empty((3, 30), np.float32)
    _rowcol.window_median(padded, 11, out, 2)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 11, axis=1).reshape(3, 30, 44)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        want = np.nanmedian(windows, axis=-1)
    np.testing.assert_allclose(out, want, rtol=1e-6, equal_nan=True)


# -- near-IR full frame against truth -------------------------------------------------------------

def _inject(detector, ngroups=2, rn=4.0, seed=0, row_noise=True):
    """Full-frame ramp with read noise, per-amplifier odd/even offsets and smooth row noise,
    built in the detector frame, returned in DMS orientation with the truth."""
    fast, slow, _ = ORIENTATIONS[detector]
    rng = np.random.default_rng(seed)
    truth = np.zeros((1, ngroups, N, N), np.float32)
    truth[..., 4:-4, 4:-4] = rng.uniform(0, 200, (N - 8, N - 8)).astype(np.float32)
    data = truth + rng.normal(0, rn, truth.shape).astype(np.float32)
    det = detector_view(data, fast, slow)
    offsets = rng.normal(0, 40, (ngroups, 4, 2))
    for g in range(ngroups):
        for amp in range(4):
            for parity in range(2):
                det[0, g, :, amp * 512 + parity:(amp + 1) * 512:2] += offsets[g, amp, parity]
    walk = np.cumsum(rng.normal(0, 1.0, (ngroups, N + 100)), axis=1)
    rows = np.stack([np.convolve(w, np.ones(61) / 61, mode="valid")[:N] for w in walk])
    if row_noise:
        det[0] += 3 * rows[:, :, None].astype(np.float32)
    return data, truth


@pytest.mark.parametrize("detector", ["NRCA1", "NRS2"])
def test_full_frame_removes_amplifier_offsets_and_row_noise(detector):
    rn = 4.0
    data, truth = _inject(detector, rn=rn)
    model = make_model(data, detector)
    before = model.data.copy()
    result = run(model)
    assert result.meta.cal_step.refpix == "COMPLETE"
    np.testing.assert_array_equal(model.data, before)         # input untouched
    assert result.data.dtype == np.float32
    fast, slow, _ = ORIENTATIONS[detector]
    resid = detector_view(result.data - truth, fast, slow)[0, :, 4:-4, 4:-4]
    assert (before - truth).std() > 20 * rn
    # Read-noise level: the reference-pixel estimates add only a little noise.
    assert resid.std() == pytest.approx(rn, rel=0.05)
    assert abs(resid.mean()) < 0.1
    # No amplifier/parity structure left; row structure at the running-median noise level.
    for amp in range(4):
        for parity in range(2):
            cols = resid[..., amp * 512 - 4 + parity + 4:(amp + 1) * 512 - 4:2]
            assert abs(cols.mean()) < 0.2
    assert resid.mean(axis=-1).std() < 0.5 * rn


def test_full_frame_options_and_dq():
    data, truth = _inject("NRCA1", seed=1, row_noise=False)
    pixeldq = np.zeros((N, N), np.uint32)
    # Bad (DO_NOT_USE) reference pixels must not bias the means: spoil half the samples of
    # amplifier A's even columns (its bottom rows; detector frame = DMS flipped in x).
    det_data, det_dq = detector_view(data, -1, 2), detector_view(pixeldq, -1, 2)
    det_data[0, :, 0:4, 0:512:2] += 100.0
    det_dq[0:4, 0:512:2] = dq.DO_NOT_USE
    model = make_model(data, "NRCA1", pixeldq=pixeldq)
    no_side = run(model, use_side_ref_pixels=False)
    plain = run(model, odd_even_columns=False, use_side_ref_pixels=False)
    resid = detector_view(no_side.data - truth, -1, 2)[0, :, 4:-4, 4:-4]
    for amp in range(4):
        for parity in range(2):
            assert abs(resid[..., amp * 512 + parity:(amp + 1) * 512 - 8:2].mean()) < 0.3
    # One mean per amplifier cannot remove an odd/even difference.
    r2 = detector_view(plain.data - truth, -1, 2)[0, :, 4:-4, 4:-4]
    assert abs(r2[..., 0:500:2].mean() - r2[..., 1:500:2].mean()) > 1.0
    with pytest.raises(ConfigError):
        RefPixStep(nonexistent=1)


def test_zeroframe_is_corrected_and_zeros_kept():
    data, truth = _inject("NRCA1", ngroups=1, seed=2)
    model = make_model(data, "NRCA1")
    zero = data[:, 0].copy()
    zero[0, 500, 500] = 0.0
    model.zeroframe = zero
    model.meta.exposure.zero_frame = True
    result = run(model)
    np.testing.assert_allclose(result.zeroframe[0, 4:-4, 4:-4][[0, 100], [7, 9]],
                               result.data[0, 0, 4:-4, 4:-4][[0, 100], [7, 9]])
    assert result.zeroframe[0, 500, 500] == 0.0


def test_block_streaming_matches_whole_exposure():
    rng = np.random.default_rng(5)
    data = rng.normal(0, 5, (2, 2, N, N)).astype(np.float32)
    model = make_model(data, "NRCA1")
    step = RefPixStep()
    whole = step.run(model).data
    plan = step.prepare(model, {"refpix": "N/A", "sirskernel": "N/A"})
    pixeldq = np.zeros((N, N), np.uint32)
    for i in range(2):
        block = RampBlock(data[i:i + 1].copy(), np.zeros((1, 2, N, N), np.uint8), pixeldq, i, 2,
                          model.meta)
        step.process_block(block, plan)
        np.testing.assert_array_equal(block.data[0], whole[i])


# -- subarrays -------------------------------------------------------------------------------------

def test_one_output_subarray_uses_flagged_reference_pixels():
    # A SUB160-like corner subarray of NRCA1: DMS rows/cols 156-159 are reference pixels.
    rng = np.random.default_rng(6)
    ny = nx = 160
    truth = rng.uniform(0, 100, (2, 3, ny, nx)).astype(np.float32)
    pixeldq = np.zeros((ny, nx), np.uint32)
    pixeldq[156:, :] = dq.REFERENCE_PIXEL
    pixeldq[:, 156:] = dq.REFERENCE_PIXEL
    truth[..., pixeldq != 0] = 0.0
    data = truth + rng.normal(0, 3, truth.shape).astype(np.float32)
    # detector column = 2047 - (1888 + x): parity flips with DMS x
    det_col = 2047 - (1888 + np.arange(nx))
    offsets = rng.normal(0, 30, (2, 3, 2))
    data += offsets[..., det_col % 2][:, :, None, :].astype(np.float32)
    model = make_model(data, "NRCA1", xstart=1889, ystart=1889, noutputs=1, pixeldq=pixeldq)
    result = run(model)
    assert result.meta.cal_step.refpix == "COMPLETE"
    resid = (result.data - truth)[..., :156, :156]
    for parity in range(2):
        assert abs(resid[..., det_col[:156] % 2 == parity].mean()) < 0.3
    assert resid.std() == pytest.approx(3.0, rel=0.05)
    single = run(model, odd_even_columns=False)
    r1 = (single.data - truth)[..., :156, :156]
    assert abs(r1[..., det_col[:156] % 2 == 0].mean() - r1[..., det_col[:156] % 2 == 1].mean()) \
        > 1.0


def test_subarray_without_reference_pixels_is_skipped():
    data = np.random.default_rng(7).normal(0, 3, (1, 2, 64, 64)).astype(np.float32)
    model = make_model(data, "NRCA1", xstart=500, ystart=500, noutputs=1)
    result = run(model)
    assert result.meta.cal_step.refpix == "SKIPPED"
    np.testing.assert_array_equal(result.data, data)


def test_four_output_stripe_subarray():
    # 64 full-width rows at the bottom: bottom reference rows and both side columns present.
    rng = np.random.default_rng(8)
    ny = 64
    truth = np.zeros((1, 2, ny, N), np.float32)
    truth[..., 4:, 4:-4] = rng.uniform(0, 50, (ny - 4, N - 8)).astype(np.float32)
    data = truth + rng.normal(0, 3, truth.shape).astype(np.float32)
    fast, slow = 1, 2                                    # e.g. NRCA2-like readout
    offsets = rng.normal(0, 30, (2, 4, 2))
    for g in range(2):
        for amp in range(4):
            for parity in range(2):
                data[0, g, :, amp * 512 + parity:(amp + 1) * 512:2] += offsets[g, amp, parity]
    model = make_model(data, "NRCB1", noutputs=4, subarray="SUBGRISM64")
    model.meta.subarray.fastaxis, model.meta.subarray.slowaxis = fast, slow
    result = run(model)
    resid = (result.data - truth)[0, :, 4:, 4:-4]
    assert result.meta.cal_step.refpix == "COMPLETE"
    assert abs(resid.mean()) < 0.5 and resid.std() < 4.0


# -- MIRI and unsupported modes --------------------------------------------------------------------

def test_miri_skipped_by_default_and_subarrays_always():
    data = np.zeros((1, 3, 1024, 1032), np.float32)
    assert run(make_model(data, "MIRIMAGE")).meta.cal_step.refpix == "SKIPPED"
    sub = make_model(np.zeros((1, 3, 256, 256), np.float32), "MIRIMAGE", xstart=413, ystart=51)
    assert run(sub, skip_miri=False).meta.cal_step.refpix == "SKIPPED"


def test_miri_full_frame_reference_columns():
    rng = np.random.default_rng(9)
    ng = 4
    truth = np.zeros((1, ng, 1024, 1032), np.float32)
    truth[..., 4:-4] = (rng.uniform(0, 20, (1024, 1024)) * np.arange(ng)[:, None, None])
    data = truth + rng.normal(0, 2, truth.shape).astype(np.float32)
    drift = rng.normal(0, 20, (ng, 2, 4))                    # group, row parity, amplifier
    for g in range(ng):
        for p in range(2):
            for a in range(4):
                data[0, g, p::2, a::4] += drift[g, p, a]
    model = make_model(data, "MIRIMAGE")
    model.meta.instrument.name = "MIRI"
    result = run(model, skip_miri=False)
    assert result.meta.cal_step.refpix == "COMPLETE"
    np.testing.assert_array_equal(result.data[0, 0], data[0, 0])     # first group kept
    # Each group now carries the first group's drift only.
    resid = result.data - truth
    for g in range(1, ng):
        for p in range(2):
            for a in range(4):
                assert resid[0, g, p::2, a::4].mean() == pytest.approx(drift[0, p, a], abs=0.3)


@pytest.mark.parametrize("detector", ["NRS1", "NRS2"])
def test_irs2_top_bottom_correction_removes_output_offsets(detector):
    """irs2_mean_subtraction's correction on IRS2 frames: offsets different for each of the
    five outputs (640 samples along the readout each) and each column parity (the interleaved
    reference pixels in pairs: odd, odd, even, even) are removed, to the clipped mean's noise
    (8 rows x 320 columns of 1 DN noise: 0.02 DN; asserted 0.1, 5 of those), from every pixel,
    in both detectors' orientations. A 5000 DN outlier in the top rows is clipped at the default
    siglimit and pulls its output/parity by 5000/2560 ~ 2 DN with siglimit=1000."""
    from jwpipe.irs2 import odd_columns
    from jwpipe.steps.refpix import detector_view, irs2_top_bottom_correction

    rng = np.random.default_rng(7)
    fast, slow = {"NRS1": (2, 1), "NRS2": (-2, -1)}[detector]
    odd = odd_columns()
    offsets = rng.uniform(-500, 500, (5, 2))                  # [output, odd/even]
    amp = np.arange(3200) // 640
    column_offset = offsets[amp, np.where(odd, 0, 1)]
    results = {}
    for siglimit in (3.0, 1000.0):
        images = np.zeros((1, 3200, 2048), np.float32)
        det = detector_view(images, fast, slow)               # (1, 2048, 3200), writable view
        det[:] = column_offset + rng.normal(0, 1, det.shape)
        det[0, 2046, 700] += 5000.0                           # output A, odd column, top row
        pixeldq = np.zeros((3200, 2048), np.uint32)
        irs2_top_bottom_correction(images, pixeldq, odd, fast, slow, siglimit=siglimit)
        results[siglimit] = np.array([[det[0, 4:2044, (amp == a) & (odd == o)].mean()
                                       for o in (True, False)] for a in range(5)])
    assert np.abs(results[3.0]).max() < 0.1, results[3.0]
    pulled = results[1000.0]
    assert pulled[1, 0] == pytest.approx(-5000 / 2560, abs=0.1)
    others = np.ones(pulled.shape, bool)
    others[1, 0] = False
    assert np.abs(pulled[others]).max() < 0.1


def test_irs2_without_its_reference_and_sirs_are_clear_errors():
    """An IRS2 exposure needs the REFPIX reference (its alpha and beta): without one the step
    says so, naming READPATT, rather than skipping and leaving 3200-row frames to the steps
    after it, with or without irs2_mean_subtraction. siglimit must be positive: a ConfigError
    (SIRS parameters: test_refpix_sirs)."""
    data = np.zeros((1, 1, 3200, 2048), np.float32)
    model = make_model(data, "NRS1")
    model.meta.exposure.readpatt = "NRSIRS2"
    with pytest.raises(ConfigError, match="READPATT=NRSIRS2.*REFPIX reference"):
        run(model)
    with pytest.raises(ConfigError, match="READPATT=NRSIRS2.*REFPIX reference"):
        run(model, irs2_mean_subtraction=True)
    full = make_model(np.zeros((1, 1, 64, 64), np.float32), "NRCA1", noutputs=1)
    with pytest.raises(ConfigError, match="refpix_algorithm"):
        run(full, refpix_algorithm="sirs2")
    with pytest.raises(ConfigError, match="siglimit"):
        run(full, siglimit=0.0)


# -- oracle: NIRCam SUB160, one output -------------------------------------------------------------

def test_oracle_sub160_reference_pixels_match(nircam_oracle):
    """The reference pipeline's refpix offsets, recovered from its _ramp output.

    At reference pixels the oracle _ramp is raw - superbias - refpix offset exactly: IPC leaves
    reference pixels alone, the linearity coefficients there are the identity and the dark is 0.
    So our output must equal the oracle there. Science pixels also went through IPC, linearity
    and dark; test_step_ipc replays that chain and compares every pixel.
    """
    from astropy.io import fits

    from jwpipe.references import open_reference

    refs = nircam_oracle["refs"]
    model = RefPixStep().open_input(nircam_oracle["uncal"])
    mask = open_reference(refs["mask"], "mask")
    # The mask's DQ values are standard flags (its DQ_DEF maps each bit to itself).
    model.pixeldq = np.asarray(mask.dq, np.uint32)
    bias = np.nan_to_num(np.asarray(open_reference(refs["superbias"], "superbias").data))
    model.data = model.data - bias
    before = model.data.copy()
    result = RefPixStep(overrides={"refpix": refs["refpix"], "sirskernel": refs["sirskernel"]}
                        ).run(model)
    assert result.meta.cal_step.refpix == "COMPLETE"
    assert result.meta.ref_file.refpix.name == "N/A"
    np.testing.assert_array_equal(model.data, before)
    oracle = fits.getdata(nircam_oracle["ramp"], "SCI")
    ref = (model.pixeldq & dq.REFERENCE_PIXEL) != 0
    assert ref.sum() == 4 * 160 + 4 * 156
    np.testing.assert_allclose(result.data[..., ref], oracle[..., ref], atol=1e-3, rtol=0)
    # The offsets are per integration, group and detector-column parity.
    removed = before - result.data
    assert np.ptp(removed[..., 0::2], axis=(-2, -1)).max() < 5e-3      # float32 rounding
    assert np.abs(removed).max() > 1.0
