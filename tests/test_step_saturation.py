"""saturation: the compiled kernel against a slow reference, the grouped-data checks, ZEROFRAME,
the step on the oracle exposures (SATURATED flags must equal the reference pipeline's)."""

from __future__ import annotations

import numpy as np
import pytest
from _stage1_helpers import assert_unchanged, make_ramp, snapshot, write_ref

from jwpipe import datamodels
from jwpipe import dq as dqflags
from jwpipe.steps.saturation import (
    ATOD_LIMIT,
    SaturationStep,
    flag_saturation,
    grow_mask,
    prepare_thresholds,
)

SAT, DNU, FLOOR = dqflags.SATURATED, dqflags.DO_NOT_USE, dqflags.AD_FLOOR


def slow_saturation(data, threshold, grow):
    """Group by group, pixel by pixel: the reference pipeline's rules, written plainly."""
    nints, ngroups, ny, nx = data.shape
    gdq = np.zeros(data.shape, np.uint8)
    for i in range(nints):
        hit = np.zeros((ny, nx), bool)
        for g in range(ngroups):
            hit |= data[i, g] >= threshold
            grown = np.zeros_like(hit)
            for y, x in zip(*np.nonzero(hit), strict=True):
                grown[max(0, y - grow):y + grow + 1, max(0, x - grow):x + grow + 1] = True
            gdq[i, g][grown] |= SAT
            gdq[i, g][data[i, g] <= 0] |= FLOOR | DNU
    return gdq


def ramps(rng, shape, rate_max=8000.0):
    nints, ngroups, ny, nx = shape
    rate = rng.uniform(0, rate_max, (nints, 1, ny, nx))
    t = np.arange(ngroups)[None, :, None, None]
    return (1000.0 + rate * t + rng.normal(0, 5, shape)).astype(np.float32)


@pytest.mark.parametrize("grow", [0, 1, 2])
@pytest.mark.parametrize("variant", ["native", "float64", "bigendian", "readonly", "strided"])
def test_kernel_matches_slow_reference(grow, variant):
    rng = np.random.default_rng(3)
    data = ramps(rng, (2, 6, 23, 17))
    data[0, 2:, 5, 5] = -3.0                      # A/D floor in later groups
    data[1, :, 0, 0] = 70000.0                    # saturated from group 1, at a corner
    thr = rng.uniform(20000, 40000, (23, 17)).astype(np.float32)
    expected = slow_saturation(data, thr, grow)
    arg = {"native": data, "float64": data.astype(np.float64),
           "bigendian": data.astype(">f4"), "readonly": data.copy(),
           "strided": np.repeat(data, 2, axis=3)[..., ::2]}[variant]
    if variant == "readonly":
        arg.flags.writeable = False
    gdq = np.zeros(data.shape, np.uint8)
    first = flag_saturation(arg, gdq, thr, n_pix_grow_sat=grow)
    np.testing.assert_array_equal(gdq, expected)
    # first_sat is the first group carrying SATURATED (ngroups where none)
    flagged = (gdq & SAT) != 0
    np.testing.assert_array_equal(first, np.where(flagged.any(1), flagged.argmax(1), 6))


def test_threshold_preparation_and_no_sat_check():
    thr = np.array([[100.0, np.nan], [200.0, 300.0]], np.float32)
    sat_dq = np.array([[0, 0], [dqflags.NO_SAT_CHECK, dqflags.HOT]], np.uint32)
    out, flags, nocheck = prepare_thresholds(thr, sat_dq)
    assert out.dtype == np.float32 and flags.dtype == np.uint32
    np.testing.assert_array_equal(out, [[100.0, ATOD_LIMIT + 1], [ATOD_LIMIT + 1, 300.0]])
    np.testing.assert_array_equal(flags, [[0, dqflags.NO_SAT_CHECK],
                                          [dqflags.NO_SAT_CHECK, dqflags.HOT]])
    np.testing.assert_array_equal(nocheck, [[False, True], [True, False]])
    # a NO_SAT_CHECK pixel flat at the A/D limit is never saturated, nor are its neighbours
    data = np.full((1, 3, 2, 2), 50.0, np.float32)
    data[0, :, 0, 1] = ATOD_LIMIT
    gdq = np.zeros(data.shape, np.uint8)
    flag_saturation(data, gdq, out)
    assert not (gdq & SAT).any()
    assert np.isnan(thr[0, 1])             # the caller's array is untouched


def test_edge_cases_all_saturated_group1_and_short_ramps():
    thr = np.full((4, 4), 1000.0, np.float32)
    for ngroups in (1, 2, 5):
        data = np.full((1, ngroups, 4, 4), 10.0, np.float32)
        data[0, :, 0, 0] = 5000.0          # saturated in every group (from group 1)
        gdq = np.zeros(data.shape, np.uint8)
        first = flag_saturation(data, gdq, thr, n_pix_grow_sat=1)
        assert (gdq[0, :, :2, :2] & SAT).all()          # the pixel and its grown box
        assert not (gdq[0, :, 2:, :] & SAT).any()
        assert first[0, 0, 0] == 0 and first[0, 3, 3] == ngroups
        assert not (gdq & DNU).any()                   # saturated groups: SATURATED only


def test_grow_mask_box():
    m = np.zeros((7, 7), bool)
    m[0, 0] = m[4, 4] = True
    g = grow_mask(m, 1)
    assert g.sum() == 4 + 9 and g[5, 5] and g[1, 1] and not g[2, 2]
    assert grow_mask(m, 0).sum() == 2


def test_grouped_data_group2_and_diluted_checks():
    # NFRAMES=4: group g averages frames 4g+1..4g+4. A cosmic ray saturating during frame 3 of
    # group 2 leaves group 2 (the average) below the threshold; group 3 is saturated.
    nframes, thr_value, bias_value = 4, 50000.0, 10000.0
    frames = bias_value + 100.0 * np.arange(1, 5 * nframes + 1)
    frames[6:] = 60000.0                         # saturating event in frame 7 (group 2)
    groups = frames.reshape(5, nframes).mean(axis=1)
    assert groups[1] < thr_value <= groups[2]
    data = np.tile(groups[None, :, None, None], (1, 1, 5, 5)).astype(np.float32)
    data[0, :, 0, :] = 12000.0                   # a quiet row
    thr = np.full((5, 5), thr_value, np.float32)
    bias = np.full((5, 5), bias_value, np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    flag_saturation(data, gdq, thr, n_pix_grow_sat=0, nframes=nframes, bias=bias)
    assert (gdq[0, 1, 2, 2] & SAT) and (gdq[0, 2:, 2, 2] & SAT).all()
    assert not (gdq[0, 0] & SAT).any() and not (gdq[0, :, 0] & (SAT | DNU)).any()
    # without the read pattern (nframes=1 semantics) group 2 stays usable
    gdq1 = np.zeros(data.shape, np.uint8)
    flag_saturation(data, gdq1, thr, n_pix_grow_sat=0, nframes=1)
    assert not (gdq1[0, 1] & SAT).any()
    # diluted check: a group over threshold*(mean frame/last frame) before a saturated one
    data2 = np.full((1, 3, 1, 1), 100.0, np.float32)
    data2[0, 1] = 0.9 * thr_value                # group 2 dilution factor (4+2.5)/8 = 0.8125
    data2[0, 2] = 60000.0
    gdq2 = np.zeros(data2.shape, np.uint8)
    flag_saturation(data2, gdq2, thr[:1, :1], n_pix_grow_sat=0, nframes=nframes)
    assert gdq2[0, 1, 0, 0] & DNU and not gdq2[0, 0, 0, 0] & DNU


def slow_grouped(data, gdq, thr, grow, nframes, bias, nocheck):
    """Plane-wide version of the read-pattern checks (after the basic flagging)."""
    gdq = gdq.copy()
    ngroups = data.shape[1]
    for i in range(data.shape[0]):
        for g in range(ngroups - 2, -1, -1):
            factor = (g * nframes + (nframes + 1) / 2) / ((g + 1) * nframes)
            limit = np.where(nocheck, thr.astype(np.float64), thr * factor)
            partial = ((data[i, g] >= limit) & ((gdq[i, g] & (SAT | DNU)) == 0)
                       & ((gdq[i, g + 1] & SAT) != 0))
            gdq[i, g][grow_mask(partial, grow)] |= DNU
        g1, g2, g3 = data[i, 0], data[i, 1], data[i, 2]
        mask = ((g1 - bias) / np.float32((nframes + 1) / 2)) * np.float32(3 * nframes) + bias < thr
        mask &= (g2 - g1) > (thr - g1) / np.float32(nframes)
        mask &= g3 >= thr
        gdq[i, 1][grow_mask(mask, grow)] |= SAT
    return gdq


@pytest.mark.parametrize("nframes", [2, 4])
def test_grouped_checks_match_plane_wide_version(nframes):
    rng = np.random.default_rng(nframes)
    shape = (2, 6, 30, 40)
    data = ramps(rng, shape, rate_max=12000.0)
    hits = rng.random(shape[:1] + shape[2:]) < 0.05          # bright cosmic rays in group 2
    data[:, 1:][np.broadcast_to(hits[:, None], data[:, 1:].shape)] += 30000.0
    thr = rng.uniform(30000, 45000, shape[2:]).astype(np.float32)
    thr[3, 3] = ATOD_LIMIT + 1
    nocheck = thr > ATOD_LIMIT
    bias = rng.uniform(900, 1100, shape[2:]).astype(np.float32)
    base = np.zeros(shape, np.uint8)
    flag_saturation(data, base, thr, n_pix_grow_sat=1, nframes=1)
    expected = slow_grouped(data, base, thr, 1, nframes, bias, nocheck)
    gdq = np.zeros(shape, np.uint8)
    flag_saturation(data, gdq, thr, n_pix_grow_sat=1, nframes=nframes, bias=bias,
                    no_sat_check=nocheck)
    np.testing.assert_array_equal(gdq, expected)
    assert (gdq != base).any()


def test_zeroframe_zeroed_where_saturated_floor_or_grown():
    data = np.full((1, 3, 4, 4), 100.0, np.float32)
    zero = np.full((1, 4, 4), 50.0, np.float32)
    zero[0, 0, 0] = 2000.0                       # saturated
    zero[0, 3, 3] = -1.0                         # A/D floor
    gdq = np.zeros(data.shape, np.uint8)
    flag_saturation(data, gdq, np.full((4, 4), 1000.0, np.float32), zeroframe=zero)
    expect = np.full((4, 4), 50.0, np.float32)
    expect[:2, :2] = 0.0
    expect[3, 3] = 0.0
    np.testing.assert_array_equal(zero[0], expect)


def test_step_subarray_cut_from_full_frame_reference(tmp_path):
    rng = np.random.default_rng(5)
    full_thr = rng.uniform(3000, 4000, (40, 50)).astype(np.float32)
    full_thr[12, 22] = np.nan
    sat_dq = np.zeros((40, 50), np.uint32)
    sat_dq[15, 25] = dqflags.NO_SAT_CHECK
    ref = write_ref(tmp_path / "sat.fits", "SaturationModel", "saturation", data=full_thr,
                    dq=sat_dq)
    data = ramps(rng, (1, 4, 10, 20), rate_max=1500.0)
    model = make_ramp(data, xstart=21, ystart=11, subarray="SUBTEST")
    snap = snapshot(model)
    out = SaturationStep(overrides={"saturation": ref, "superbias": "N/A"}).run(model)
    assert_unchanged(model, snap)
    assert out.meta.cal_step.saturation == "COMPLETE"
    thr = full_thr[10:20, 20:40]
    thr_used = np.where(np.isnan(thr) | (sat_dq[10:20, 20:40] != 0), ATOD_LIMIT + 1, thr)
    expected = slow_saturation(data, thr_used, 1)
    np.testing.assert_array_equal(out.groupdq, expected)
    assert out.pixeldq[2, 2] == dqflags.NO_SAT_CHECK and out.pixeldq[5, 5] == dqflags.NO_SAT_CHECK
    assert out.groupdq.dtype == np.uint8 and out.pixeldq.dtype == np.uint32


@pytest.mark.parametrize("case", ["nircam_oracle", "miri_oracle"])
def test_oracle_saturated_flags_match_reference(case, request):
    """SATURATED is decided on the raw ramp, before ipc, so it must agree bit for bit."""
    info = request.getfixturevalue(case)
    refs = info["refs"]
    model = SaturationStep().open_input(str(info["uncal"]))
    snap = snapshot(model)
    out = SaturationStep(overrides={k: refs[k] for k in ("saturation", "superbias")}).run(model)
    assert_unchanged(model, snap)
    assert out.meta.cal_step.saturation == "COMPLETE"
    reference = datamodels.open(str(info["ramp"]))
    np.testing.assert_array_equal(out.groupdq & SAT, reference.groupdq & SAT)
    assert (out.groupdq & SAT).any()
