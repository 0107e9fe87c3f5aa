"""persistence: trap model (legacy) against its own equations, state carried across integrations,
blocks and exposures (_trapsfilled), and the 3.0 flagging windows."""

from __future__ import annotations

import numpy as np
import pytest

from jwpipe import dq
from jwpipe.datamodels import PersistenceSatModel, RampModel, TrapDensityModel, TrapParsModel
from jwpipe.errors import ConfigError
from jwpipe.steps.base import RampBlock
from jwpipe.steps.persistence import (
    SCALEFACTOR,
    PersistenceStep,
    TrapsFilledModel,
    flag_persistence_windows,
    group_slope,
    mjd_to_epoch,
)

NG, NY, NX = 5, 16, 20
TGROUP = TFRAME = 10.0
PERSAT = 50000.0
DENSITY = 2000.0
FAMILIES = np.array([(1.0, -0.05, 0.01, -0.02), (0.5, -0.005, 0.02, -0.002)],
                    dtype=[("capture0", "f4"), ("capture1", "f4"), ("capture2", "f4"),
                           ("decay_param", "f4")])
HOT = (7, 11)                       # the pixel saturating in the first integration


@pytest.fixture(scope="module")
def trap_refs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("traprefs")
    density = TrapDensityModel(np.full((NY, NX), DENSITY, np.float32))
    density.meta.reftype = "TRAPDENSITY"
    density.dq = np.zeros((NY, NX), np.uint32)
    density.dq[0, 0] = dq.DO_NOT_USE                   # no traps counted there
    pars = TrapParsModel()
    pars.meta.reftype = "TRAPPARS"
    pars.trappars_table = FAMILIES
    persat = PersistenceSatModel(np.full((NY, NX), PERSAT, np.float32))
    persat.meta.reftype = "PERSAT"
    persat.data[1, 1] = np.nan
    return {"trapdensity": str(density.save(folder / "density.fits")),
            "trappars": str(pars.save(folder / "trappars.fits")),
            "persat": str(persat.save(folder / "persat.fits"))}


def make_ramp(nints=2, start_mjd=60000.0, slope=10.0):
    truth = np.zeros((nints, NG, NY, NX), np.float32)
    truth[:] = slope * np.arange(1, NG + 1, dtype=np.float32)[:, None, None]
    truth[0, :, HOT[0], HOT[1]] = 1.0e5                 # above PERSAT in every group
    model = RampModel(truth.copy())
    meta = model.meta
    meta.instrument.name, meta.instrument.detector = "NIRCAM", "NRCA1"
    meta.exposure.nints, meta.exposure.ngroups = nints, NG
    meta.exposure.group_time, meta.exposure.frame_time = TGROUP, TFRAME
    meta.exposure.integration_time = NG * TGROUP
    meta.exposure.nresets_at_start = meta.exposure.nresets_between_ints = 1
    meta.exposure.start_time = start_mjd
    meta.exposure.end_time = start_mjd + (nints * NG * TGROUP + (nints - 1) * TFRAME) / 86400
    meta.subarray.xstart = meta.subarray.ystart = 1
    meta.subarray.xsize, meta.subarray.ysize = NX, NY
    model.groupdq = np.zeros(model.shape, np.uint8)
    model.groupdq[0, :, HOT[0], HOT[1]] = dq.SATURATED | dq.DO_NOT_USE
    model.pixeldq = np.zeros((NY, NX), np.uint32)
    return model, truth


def expected_persistence():
    """Persistence of HOT in the groups of integration 2, straight from the trap model."""
    out = np.zeros(NG)
    for p0, p1, p2, d in FAMILIES.tolist():
        # Saturated in all groups: instantaneous traps all filled, exponential ones for NG*TGROUP.
        filled = DENSITY * p2 + DENSITY * p0 * (1 - np.exp(-abs(p1) * NG * TGROUP))
        filled *= np.exp(-abs(d) * TFRAME)             # one reset between the integrations
        out += filled * (1 - np.exp(-abs(d) * TGROUP * np.arange(1, NG + 1)))
    return out


def trap_step(refs, tmp_path, **params):
    return PersistenceStep(overrides=refs, skip=False, output_dir=str(tmp_path), **params)


def test_saturation_persistence_is_removed_in_the_next_integration(trap_refs, tmp_path):
    model, truth = make_ramp()
    pers = expected_persistence()
    assert pers[0] > 100                                # a strong effect
    model.data[1, :, HOT[0], HOT[1]] += pers.astype(np.float32)
    before = model.data.copy()
    result = trap_step(trap_refs, tmp_path).run(model)
    assert result.meta.cal_step.persistence == "COMPLETE"
    np.testing.assert_array_equal(model.data, before)                 # input untouched
    np.testing.assert_allclose(result.data[1, :, HOT[0], HOT[1]], truth[1, :, HOT[0], HOT[1]],
                               rtol=1e-5, atol=0.01)
    # Other pixels: only the tiny ramp capture of a 10 DN/group signal.
    others = np.ones((NY, NX), bool)
    others[HOT] = False
    assert np.abs(result.data[1][:, others] - truth[1][:, others]).max() < 0.01
    np.testing.assert_array_equal(result.data[0], before[0])          # no traps at the start
    assert result.pixeldq[HOT] & dq.PERSISTENCE
    assert not (result.pixeldq[others] & dq.PERSISTENCE).any()
    # The traps-filled product: one full-frame plane per family.
    written = TrapsFilledModel(tmp_path / "jwpipe_exposure_trapsfilled.fits")
    assert written.data.shape == (2, NY, NX)
    assert written.data[0, HOT[0], HOT[1]] > 100


def test_ramp_and_jump_capture_follow_the_model(trap_refs, tmp_path):
    model, _ = make_ramp(nints=1)
    model.data[0, :, HOT[0], HOT[1]] = 20.0 * np.arange(1, NG + 1)    # nothing saturates
    model.groupdq[:] = 0
    jump = 3000.0
    model.data[0, 3:, 2, 3] += jump
    model.groupdq[0, 3, 2, 3] = dq.JUMP_DET
    trap_step(trap_refs, tmp_path).run(model)
    filled = TrapsFilledModel(tmp_path / "jwpipe_exposure_trapsfilled.fits").data
    for k, (p0, p1, p2, _d) in enumerate(FAMILIES.tolist()):
        tau = 1 / abs(p1)
        dt = NG * TGROUP + TFRAME                         # one reset soaks too
        slope = 20.0 / (PERSAT * TGROUP)
        ramp = SCALEFACTOR * DENSITY * slope ** 2 * (dt ** 2 * (p0 + p2) / 2 + p0 * (
            dt * tau + tau ** 2) * np.exp(-dt / tau) - p0 * tau ** 2)
        assert filled[k, HOT[0], HOT[1]] == pytest.approx(ramp, rel=1e-4)
        slope10 = 10.0 / (PERSAT * TGROUP)
        ramp10 = ramp * (slope10 / slope) ** 2
        cr = SCALEFACTOR * DENSITY * jump * (p0 * (1 - np.exp(p1 * (NG - 3 - 0.5) * TGROUP)) + p2)
        assert filled[k, 2, 3] == pytest.approx(ramp10 + cr, rel=1e-4)
        assert filled[k, 0, 0] == 0.0                      # DO_NOT_USE trap density


def test_state_is_carried_across_blocks(trap_refs, tmp_path):
    model, _ = make_ramp(nints=3)
    model.data[1:, :, HOT[0], HOT[1]] += 500.0
    whole = trap_step(trap_refs, tmp_path).run(model).data
    step = trap_step(trap_refs, tmp_path, save_trapsfilled=False)
    state = step.prepare(model, step.get_references(model))
    pixeldq = np.zeros((NY, NX), np.uint32)
    for start, stop in ((0, 2), (2, 3)):
        block = RampBlock(model.data[start:stop].copy(), model.groupdq[start:stop].copy(),
                          pixeldq, start, 3, model.meta)
        step.process_block(block, state)
        np.testing.assert_array_equal(block.data, whole[start:stop])
    with pytest.raises(RuntimeError, match="in order"):
        step.process_block(RampBlock(model.data[:1].copy(), model.groupdq[:1].copy(), pixeldq,
                                     0, 3, model.meta), state)


def test_trapsfilled_continues_into_the_next_exposure(trap_refs, tmp_path):
    model, _ = make_ramp(nints=2)
    model.data[1, :, HOT[0], HOT[1]] += 300.0
    combined = trap_step(trap_refs, tmp_path / "ab").run(model)
    first, _ = make_ramp(nints=1)
    first.path = tmp_path / "expa_uncal.fits"
    trap_step(trap_refs, tmp_path).run(first)
    tf_path = tmp_path / "expa_trapsfilled.fits"
    assert tf_path.exists()
    # Exposure B starts one reset (TFRAME) after A ends: the same decay as between integrations.
    second, _ = make_ramp(nints=1, start_mjd=first.meta.exposure.end_time + TFRAME / 86400)
    second.data[:] = model.data[1:2]
    second.groupdq[:] = 0
    result = trap_step(trap_refs, tmp_path / "b", input_trapsfilled=str(tf_path)).run(second)
    np.testing.assert_allclose(result.data[0], combined.data[1], rtol=1e-5, atol=1e-3)
    without = trap_step(trap_refs, tmp_path / "b2").run(second)
    assert abs(without.data[0, -1, HOT[0], HOT[1]] - result.data[0, -1, HOT[0], HOT[1]]) > 100


def test_group_slope_drops_saturated_and_jump_differences():
    rng = np.random.default_rng(0)
    ng = 8
    data = np.cumsum(rng.normal(5, 1, (ng, 30, 30)), axis=0).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[5:, 3, 4] = dq.SATURATED
    data[4:, 10, 10] += 800
    gdq[4, 10, 10] = dq.JUMP_DET
    gdq[:, 20, 20] = dq.SATURATED
    got = group_slope(data, gdq)
    # The legacy definition: sort differences (saturated ones last), drop n_jump + n_sat.
    diff = np.diff(data, axis=0).astype(np.float64)
    sat = (gdq[1:] & dq.SATURATED) != 0
    diff[sat] = np.inf
    upper = (ng - 1) - sat.sum(0) - ((gdq & dq.JUMP_DET) != 0).sum(0)
    srt = np.sort(diff, axis=0)
    want = np.array([[srt[:u, y, x].mean() if u > 0 else 0.0 for x, u in enumerate(row)]
                     for y, row in enumerate(upper)])
    # float32 differences summed (reference) vs last - first (ours): float32 rounding apart
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[10, 10] < 10 and got[20, 20] == 0.0


# -- flagging windows (reference 3.0) ------------------------------------------------------------

def flag_model(nints=2):
    model, _ = make_ramp(nints=nints)
    model.groupdq[:] = 0
    model.groupdq[0, 2:, 0, 1] = dq.SATURATED
    table = np.zeros(nints, dtype=[("integration_number", "i4"), ("int_start_MJD_UTC", "f8")])
    table["integration_number"] = np.arange(1, nints + 1)
    table["int_start_MJD_UTC"] = 60000.0 + np.arange(nints) * (NG * TGROUP + TFRAME) / 86400
    model.int_times = table
    return model


def test_flagging_window_after_saturation():
    model = flag_model()
    result = PersistenceStep(skip=False, use_trap_model=False, persistence_time=25).run(model)
    assert result.meta.cal_step.persistence == "COMPLETE"
    # Group times: start + (g + 1) * 10 s; saturation at g=2 (t=30) opens [30, 55]: g=2,3,4.
    np.testing.assert_array_equal(result.groupdq[0, :, 0, 1],
                                  [0, 0, 2 | 32, 2 | 32, 2 | 32])
    assert not result.groupdq[1].any()                      # ended before integration 2
    long = PersistenceStep(skip=False, use_trap_model=False, persistence_time=75,
                           persistence_dnu=True).run(model)
    # [30, 105]: integration 2 starts at 60 s, its groups at 70, 80, 90, 100, 110.
    np.testing.assert_array_equal(long.groupdq[1, :, 0, 1], [33, 33, 33, 33, 0])
    assert not long.groupdq[..., 5, 5].any()


def test_windows_carry_to_the_next_exposure(tmp_path):
    model = flag_model(nints=1)
    saved = tmp_path / "windows.asdf"
    PersistenceStep(skip=False, use_trap_model=False, persistence_time=100,
                    save_persistence=str(saved)).run(model)
    nxt = flag_model(nints=1)
    nxt.groupdq[:] = 0
    nxt.int_times = None
    nxt.meta.exposure.start_time = 60000.0 + 60.0 / 86400        # starts 60 s later
    result = PersistenceStep(skip=False, use_trap_model=False, persistence_time=100,
                             persistence_array_file=str(saved)).run(nxt)
    # Window ends at 30 + 100 = 130 s: groups at 70..110 s are inside.
    np.testing.assert_array_equal(result.groupdq[0, :, 0, 1], [32] * 5)
    with pytest.raises(ConfigError, match="pers_time"):
        PersistenceStep(skip=False, use_trap_model=False, persistence_time=50,
                        persistence_array_file=str(saved)).run(nxt)


def test_flag_windows_function_keeps_open_windows():
    gdq = np.zeros((3, 1, 2), np.uint8)
    end = np.array([[105.0, 0.0]])
    flag_persistence_windows(gdq, end, np.array([100.0, 110.0, 120.0]), 50.0, dq.PERSISTENCE)
    np.testing.assert_array_equal(gdq[:, 0, 0], [32, 0, 0])
    assert end[0, 0] == 0.0


def test_skipped_without_references_or_window(tmp_path):
    model, _ = make_ramp()
    assert PersistenceStep().run(model).meta.cal_step.persistence == "SKIPPED"   # default skip
    none = PersistenceStep(skip=False, overrides={"trapdensity": "N/A", "trappars": "N/A",
                                                  "persat": "N/A"}).run(model)
    assert none.meta.cal_step.persistence == "SKIPPED"
    np.testing.assert_array_equal(none.data, model.data)
    with pytest.raises(ConfigError, match="persistence_time"):
        PersistenceStep(skip=False, use_trap_model=False, persistence_time=0).run(model)
    assert mjd_to_epoch(40587.0) == 0.0
