"""linearity: the compiled Horner kernel against numpy (bit for bit), coefficient preparation,
the frame-level correction of averaged groups, ZEROFRAME, and the step on a subarray."""

from __future__ import annotations

import numpy as np
import pytest
from _stage1_helpers import assert_unchanged, make_ramp, snapshot, write_ref

from jwpipe import dq as dqflags
from jwpipe.steps.linearity import (
    LinearityStep,
    apply_linearity,
    apply_polynomial,
    linearity_frame_averaged,
    prepare_coefficients,
)

SAT = dqflags.SATURATED


def random_coeffs(rng, ncoeffs, ny, nx):
    c = np.zeros((ncoeffs, ny, nx), np.float32)
    c[0] = rng.normal(0, 1, (ny, nx))
    c[1] = rng.uniform(0.98, 1.02, (ny, nx))
    for k in range(2, ncoeffs):
        c[k] = rng.normal(0, 10.0 ** (-5 * (k - 1)), (ny, nx))
    return c


@pytest.mark.parametrize("ncoeffs", [2, 3, 5, 8, 10])
def test_kernel_matches_numpy_horner_bit_for_bit(ncoeffs):
    rng = np.random.default_rng(ncoeffs)
    data = rng.uniform(-100, 60000, (2, 4, 9, 13)).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 2:, 3, 4] = SAT
    gdq[1, :, 0, 0] = SAT | dqflags.DO_NOT_USE
    gdq[1, 1, 5, 5] = dqflags.JUMP_DET             # other flags do not stop the correction
    coeffs = random_coeffs(rng, ncoeffs, 9, 13)
    expected = np.where(gdq & SAT, data, apply_polynomial(data, coeffs))
    out = data.copy()
    apply_linearity(out, gdq, coeffs, nthreads=2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[gdq & SAT != 0], data[gdq & SAT != 0])


@pytest.mark.parametrize("variant", ["float64", "bigendian", "strided", "readonly"])
def test_kernel_input_coercion(variant):
    rng = np.random.default_rng(4)
    data = rng.uniform(0, 50000, (1, 3, 5, 7)).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 2, 1, 1] = SAT
    coeffs = random_coeffs(rng, 4, 5, 7)
    expected = np.where(gdq & SAT, data, apply_polynomial(data, coeffs))
    arg = {"float64": coeffs.astype(np.float64), "bigendian": coeffs.astype(">f4"),
           "strided": np.repeat(coeffs, 2, axis=2)[..., ::2], "readonly": coeffs.copy()}[variant]
    arg.flags.writeable = variant != "readonly"
    gdq.flags.writeable = False                      # the kernel only reads group DQ
    out = data.copy()
    apply_linearity(out, gdq, arg)
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError):                  # corrected in place: must be float32 C
        apply_linearity(data.astype(np.float64), gdq, coeffs)


def test_polynomial_against_float64_truth():
    # c0 + c1 F + c2 F^2 evaluated independently in float64; float32 Horner within 1 ulp-ish
    rng = np.random.default_rng(1)
    f = rng.uniform(0, 50000, (1, 3, 4, 5)).astype(np.float32)
    c = np.stack([np.full((4, 5), 2.0), np.full((4, 5), 1.01), np.full((4, 5), 3e-7)])
    truth = c[0] + c[1] * f.astype(np.float64) + c[2] * f.astype(np.float64) ** 2
    out = f.copy()
    apply_linearity(out, np.zeros(f.shape, np.uint8), c.astype(np.float32))
    np.testing.assert_allclose(out, truth, rtol=3e-7)


def test_prepare_coefficients_bad_pixels_get_identity_and_flag():
    c = np.ones((3, 2, 3), np.float32)
    c[2, 0, 0] = np.nan                            # NaN coefficient
    c[1, 0, 1] = 0.0                               # zero linear term
    lin_dq = np.zeros((2, 3), np.uint32)
    lin_dq[1, 2] = dqflags.NO_LIN_CORR             # flagged in the reference
    lin_dq[1, 1] = dqflags.HOT
    fixed, flags = prepare_coefficients(c, lin_dq)
    for y, x in ((0, 0), (0, 1), (1, 2)):
        np.testing.assert_array_equal(fixed[:, y, x], [0.0, 1.0, 0.0])
        assert flags[y, x] & dqflags.NO_LIN_CORR
    assert flags[1, 1] == dqflags.HOT and flags[0, 2] == 0
    np.testing.assert_array_equal(fixed[:, 1, 0], [1, 1, 1])
    assert np.isnan(c[2, 0, 0])                    # input untouched
    data = np.full((1, 2, 2, 3), 1234.5, np.float32)
    apply_linearity(data, np.zeros(data.shape, np.uint8), fixed)
    assert data[0, 0, 0, 0] == 1234.5 and data[0, 1, 1, 2] == 1234.5


def test_frame_averaged_correction_beats_group_correction():
    # Non-linear frames: observed = truth - a*truth^2 (inverse poly), corrected by the forward
    # poly; groups average 4 frames. The frame-level correction recovers the averaged truth.
    nframes, ngroups, a = 4, 5, 2e-6
    truth_frames = 500.0 * np.arange(1, ngroups * nframes + 1)
    raw_frames = truth_frames - a * truth_frames ** 2
    groups = raw_frames.reshape(ngroups, nframes).mean(1)
    truth = truth_frames.reshape(ngroups, nframes).mean(1)
    # forward poly: x + a x^2 + 2 a^2 x^3 (series inverse of y = x - a x^2, to third order)
    fwd = np.zeros((4, 1, 1), np.float32)
    fwd[:, 0, 0] = [0.0, 1.0, a, 2 * a * a]
    inv = np.zeros((4, 1, 1), np.float32)
    inv[:, 0, 0] = [0.0, 1.0, -a, 0.0]
    data = groups[:, None, None].astype(np.float32).copy()
    gdq = np.zeros(data.shape, np.uint8)
    classic = data.copy()[None]
    apply_linearity(classic, gdq[None], fwd)
    linearity_frame_averaged(data, gdq, fwd, inv, nframes)
    err_frames = np.abs(data[:, 0, 0] / truth - 1).max()
    err_classic = np.abs(classic[0, :, 0, 0] / truth - 1).max()
    assert err_frames < 2e-4 and err_frames < 0.2 * err_classic
    # saturated groups are left alone; a single group falls back to the classic correction
    gdq[3:] = SAT
    again = groups[:, None, None].astype(np.float32).copy()
    linearity_frame_averaged(again, gdq, fwd, inv, nframes)
    np.testing.assert_array_equal(again[3:, 0, 0], groups[3:].astype(np.float32))
    one = data[:1].copy()
    linearity_frame_averaged(one, np.zeros(one.shape, np.uint8), fwd, inv, nframes)
    np.testing.assert_array_equal(one, apply_polynomial(data[:1], fwd))


def test_step_subarray_nan_coeffs_zeroframe(tmp_path):
    rng = np.random.default_rng(2)
    coeffs = random_coeffs(rng, 4, 30, 30)
    coeffs[2, 12, 14] = np.nan
    lin_dq = np.zeros((30, 30), np.uint32)
    lin_dq[13, 13] = dqflags.NO_LIN_CORR
    ref = write_ref(tmp_path / "lin.fits", "LinearityModel", "linearity", coeffs=coeffs,
                    dq=lin_dq)
    data = rng.uniform(100, 30000, (2, 3, 8, 6)).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[1, 1:, 4, 4] = SAT
    zero = rng.uniform(100, 3000, (2, 8, 6)).astype(np.float32)
    zero[0, 0, 0] = 0.0
    model = make_ramp(data, xstart=11, ystart=11, groupdq=gdq, zeroframe=zero)
    snap = snapshot(model)
    out = LinearityStep(overrides={"linearity": ref}).run(model)
    assert_unchanged(model, snap)
    assert out.meta.cal_step.linearity == "COMPLETE"
    c, flags = prepare_coefficients(coeffs[:, 10:18, 10:16], lin_dq[10:18, 10:16])
    expected = np.where(gdq & SAT, data, apply_polynomial(data, c))
    np.testing.assert_array_equal(out.data, expected)
    np.testing.assert_array_equal(out.data[:, :, 2, 4], data[:, :, 2, 4])   # NaN coefficient
    np.testing.assert_array_equal(out.data[:, :, 3, 3], data[:, :, 3, 3])   # NO_LIN_CORR
    assert out.pixeldq[2, 4] == dqflags.NO_LIN_CORR == out.pixeldq[3, 3]
    ez = apply_polynomial(zero, c)
    ez[0, 0, 0] = 0.0
    np.testing.assert_array_equal(out.zeroframe, ez)


def test_step_uses_frame_level_correction_for_grouped_data(tmp_path):
    rng = np.random.default_rng(8)
    coeffs = np.zeros((3, 6, 6), np.float32)
    coeffs[1], coeffs[2] = 1.0, 2e-6
    inverse = np.zeros((3, 6, 6), np.float32)
    inverse[1], inverse[2] = 1.0, -2e-6
    ref = write_ref(tmp_path / "lin.fits", "LinearityModel", "linearity", coeffs=coeffs,
                    inv_coeffs=inverse, dq=np.zeros((6, 6), np.uint32))
    data = np.cumsum(rng.uniform(1000, 3000, (2, 4, 6, 6)), axis=1).astype(np.float32)
    for nframes in (1, 4):
        out = LinearityStep(overrides={"linearity": ref}).run(make_ramp(data, nframes=nframes))
        expected = data.copy()
        if nframes == 1:        # classic group-by-group correction
            expected = apply_polynomial(expected, coeffs)
        else:
            for i in range(2):
                linearity_frame_averaged(expected[i], np.zeros((4, 6, 6), np.uint8), coeffs,
                                         inverse, nframes)
        np.testing.assert_array_equal(out.data, expected)
