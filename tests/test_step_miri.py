"""MIRI group flagging and reset: lastframe, firstframe (deprecated, skipped by default), rscd
(integration 1 vs later, group-count limits, early saturation), reset (integration dependent)."""

from __future__ import annotations

import numpy as np
import pytest
from _stage1_helpers import assert_unchanged, make_ramp, snapshot, write_ref

from jwpipe import datamodels
from jwpipe import dq as dqflags
from jwpipe.steps.firstframe import FirstFrameStep, flag_first_group
from jwpipe.steps.lastframe import LastFrameStep
from jwpipe.steps.reset import ResetStep, subtract_reset
from jwpipe.steps.rscd import RscdStep, flag_rscd_groups, limit_skip, rscd_skip_groups

SAT, DNU, FLUX_EST = dqflags.SATURATED, dqflags.DO_NOT_USE, dqflags.FLUX_ESTIMATED


def miri(data, **kw):
    kw.setdefault("subarray", "SUB256")
    kw.setdefault("readpatt", "FASTR1")
    return make_ramp(data, instrument="MIRI", detector="MIRIMAGE", **kw)


@pytest.mark.parametrize("ngroups,flagged", [(1, False), (2, False), (3, True), (8, True)])
def test_lastframe(ngroups, flagged):
    model = miri(np.ones((2, ngroups, 3, 3), np.float32))
    snap = snapshot(model)
    out = LastFrameStep().run(model)
    assert_unchanged(model, snap)
    assert out.meta.cal_step.lastframe == ("COMPLETE" if flagged else "SKIPPED")
    assert np.all(out.groupdq[:, -1] == (DNU if flagged else 0))
    assert not out.groupdq[:, :-1].any()
    nir = LastFrameStep().run(make_ramp(np.ones((1, 5, 2, 2), np.float32)))
    assert nir.meta.cal_step.lastframe == "SKIPPED" and not nir.groupdq.any()


def test_firstframe_defaults_and_bright_pixels():
    assert FirstFrameStep.Params().skip is True
    gdq = np.zeros((2, 5, 2, 2), np.uint8)
    gdq[1, 2:, 0, 0] = SAT                           # group 3 saturated in integration 2
    pdq = np.zeros((2, 2), np.uint32)
    flag_first_group(gdq, pdq, bright_use_group1=True)
    assert gdq[1, 0, 0, 0] == 0 and gdq[0, 0, 0, 0] == DNU and np.all(gdq[:, 0, 1] == DNU)
    assert pdq[0, 0] == FLUX_EST and pdq.sum() == FLUX_EST
    model = miri(np.ones((1, 5, 2, 2), np.float32))
    out = FirstFrameStep(skip=False).run(model)
    assert out.meta.cal_step.firstframe == "COMPLETE" and np.all(out.groupdq[0, 0] == DNU)
    assert FirstFrameStep().run(model).meta.cal_step.firstframe == "SKIPPED"
    assert FirstFrameStep(skip=False).run(miri(np.ones((1, 3, 2, 2), np.float32))) \
        .meta.cal_step.firstframe == "SKIPPED"


def test_rscd_table_and_limits():
    table = np.array([(b"FULL", b"FAST", 1, 3), (b"SLITLESSPRISM", b"FASTR1", 2, 4)],
                     dtype=[("SUBARRAY", "S20"), ("READPATT", "S20"), ("GROUP_SKIP1", "i4"),
                            ("GROUP_SKIP", "i4")])
    assert rscd_skip_groups(table, "FULL", "FAST") == (1, 3)
    assert rscd_skip_groups(table, "SUBPRISM", "fastr1") == (2, 4)   # old subarray name
    assert rscd_skip_groups(table, "SUB64", "FAST") is None
    assert limit_skip(3, 10) == 3 and limit_skip(3, 5) == 2 and limit_skip(3, 2) == 0


def test_flag_rscd_groups_backs_off_for_early_saturation():
    ngroups = 8
    gdq = np.zeros((ngroups, 1, 6), np.uint8)
    # pixel x saturates first in group index f[x] (never: 8)
    for x, f in enumerate([8, 0, 1, 2, 3, 4]):
        gdq[f:, 0, x] = SAT
    lowered = flag_rscd_groups(gdq, 3)
    skip = [int(np.sum(gdq[:3, 0, x] & DNU)) for x in range(6)]
    # keep >= 2 usable groups: f -> max(f - 2, 0) for 1 <= f <= 4; saturated from group 1: all
    assert skip == [3, 3, 0, 0, 1, 2]
    np.testing.assert_array_equal(lowered[0], [False, False, True, True, True, True])
    assert not (gdq[3:] & DNU).any()
    plain = np.zeros((ngroups, 1, 6), np.uint8)
    plain[:] = gdq & SAT
    flag_rscd_groups(plain, 3, bright_use_2groups=False)
    assert np.all(plain[:3] & DNU) and not (plain[3:] & DNU).any()


def slow_rscd(gdq, n_skip):
    """The reference's level-by-level loop, pixels saturated in group 1 left out."""
    out = gdq.copy()
    skip = np.full(gdq.shape[1:], n_skip)
    eligible = (gdq[0] & SAT) == 0
    lowered = np.zeros(gdq.shape[1:], bool)
    level = n_skip + 1
    hit = ((gdq[level] & SAT) != 0) & eligible
    while hit.any() and level >= 0:
        skip[hit] = np.maximum(skip[hit] - 1, 0)
        lowered |= hit
        level -= 1
        hit = ((gdq[level] & SAT) != 0) & eligible if level >= 0 else hit & False
    for g in range(n_skip):
        out[g][skip > g] |= DNU
    return out, lowered


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flag_rscd_groups_matches_level_loop(seed):
    rng = np.random.default_rng(seed)
    ngroups, n_skip = 9, 3
    first = rng.integers(0, 12, (20, 30))
    gdq = np.where(np.arange(ngroups)[:, None, None] >= first, SAT, 0).astype(np.uint8)
    gdq |= (rng.random(gdq.shape) < 0.05).astype(np.uint8) * np.uint8(dqflags.JUMP_DET)
    gdq[:, 3, 3] |= DNU
    expected, lowered = slow_rscd(gdq, n_skip)
    got = gdq.copy()
    np.testing.assert_array_equal(flag_rscd_groups(got, n_skip), lowered)
    np.testing.assert_array_equal(got, expected)


def test_rscd_step_integration_dependent(tmp_path):
    table = np.array([(b"SUB256", b"FASTR1", 1, 3)],
                     dtype=[("subarray", "S20"), ("readpatt", "S20"), ("group_skip1", "i4"),
                            ("group_skip", "i4")])
    ref = write_ref(tmp_path / "rscd.fits", "RSCDModel", "rscd", instrument="MIRI",
                    tables={"rscd_table": table}, data=np.zeros((2, 2), np.float32))
    model = miri(np.ones((3, 6, 2, 2), np.float32))
    snap = snapshot(model)
    out = RscdStep(overrides={"rscd": ref}).run(model)
    assert_unchanged(model, snap)
    assert out.meta.cal_step.rscd == "COMPLETE"
    flagged = (out.groupdq & DNU) != 0
    assert flagged[0, :1].all() and not flagged[0, 1:].any()
    assert flagged[1:, :3].all() and not flagged[1:, 3:].any()
    # four groups: at most NGROUPS-3 = 1 group flagged in every integration
    out4 = RscdStep(overrides={"rscd": ref}).run(miri(np.ones((2, 4, 2, 2), np.float32)))
    f4 = (out4.groupdq & DNU) != 0
    assert f4[:, 0].all() and not f4[:, 1:].any()
    # a segment that does not hold integration 1 uses the later-integration value throughout
    seg = miri(np.ones((2, 6, 2, 2), np.float32), nints=5)
    seg.meta.exposure.integration_start = 3
    fs = (RscdStep(overrides={"rscd": ref}).run(seg).groupdq & DNU) != 0
    assert fs[:, :3].all() and not fs[:, 3:].any()
    assert RscdStep(overrides={"rscd": ref}).run(miri(np.ones((1, 6, 2, 2), np.float32),
                                                      subarray="SUB64")) \
        .meta.cal_step.rscd == "SKIPPED"


def test_reset_subtraction(tmp_path):
    rng = np.random.default_rng(9)
    reset = rng.normal(0, 5, (2, 3, 12, 12)).astype(np.float32)
    reset[0, 0, 4, 4] = np.nan
    dq = np.zeros((12, 12), np.uint32)
    dq[5, 5] = dqflags.DO_NOT_USE
    path = write_ref(tmp_path / "reset.fits", "ResetModel", "reset", instrument="MIRI",
                     data=reset, dq=dq, keywords={"exposure.nints": 2, "exposure.ngroups": 3})
    data = rng.normal(5000, 10, (4, 5, 6, 6)).astype(np.float32)
    model = miri(data, xstart=3, ystart=3)
    snap = snapshot(model)
    out = ResetStep(overrides={"reset": path}).run(model)
    assert_unchanged(model, snap)
    sub = np.nan_to_num(reset[:, :, 2:8, 2:8])
    expected = data.copy()
    for i in range(4):
        expected[i, :3] -= sub[min(i, 1)]
    np.testing.assert_array_equal(out.data, expected)
    assert out.pixeldq[3, 3] == DNU and out.meta.cal_step.reset == "COMPLETE"
    block = data[2:3].copy()                         # a later block, segment offsets
    subtract_reset(block, sub, first_int=2)
    np.testing.assert_array_equal(block, expected[2:3])
    nir = ResetStep(overrides={"reset": path}).run(make_ramp(data))
    assert nir.meta.cal_step.reset == "SKIPPED"


def test_oracle_miri_group_flags(miri_oracle):
    """dq_init + saturation + lastframe + rscd reproduce the reference ramp's DO_NOT_USE,
    SATURATED and PIXELDQ (FLUX_ESTIMATED from rscd) exactly."""
    from jwpipe.steps.dq_init import DQInitStep
    from jwpipe.steps.saturation import SaturationStep

    refs = miri_oracle["refs"]
    model = DQInitStep().open_input(str(miri_oracle["uncal"]))
    for step in (DQInitStep(overrides={"mask": refs["mask"]}),
                 SaturationStep(overrides={"saturation": refs["saturation"],
                                           "superbias": "N/A"}),
                 LastFrameStep(), RscdStep(overrides={"rscd": refs["rscd"]})):
        model = step.run(model)
    reference = datamodels.open(str(miri_oracle["ramp"]))
    np.testing.assert_array_equal(model.groupdq & (DNU | SAT), reference.groupdq & (DNU | SAT))
    np.testing.assert_array_equal(model.pixeldq, reference.pixeldq)
    assert (model.pixeldq & FLUX_EST).any()
