"""Optional ramp-fit product (``save_opt``, ``_fitopt``): parity, truth, invariance, products.

Tolerances
----------
Kernel vs the slow reference (``tests/_reference/ramp_fit_reference.py`` with ``save_opt``): the
same expressions in the same order in double precision, so as in ``test_ramp_fit_kernel.py`` nearly
every value is bit-identical; the median rate (which enters VAR_POISSON and WEIGHTS) can be picked
one double ulp apart on near-ties, which after rounding to float32 can move a value by one float32
ulp. Float arrays are therefore compared with rtol=1e-6 (atol=0), NaN positions and array shapes
exactly. The reference's Poisson terms use the exposure-mean median rate; the kernel, like its
per-integration results, uses each integration's own one, so the parity runs the slow reference
with ``median_mode="integration"`` (with one integration the two are the same thing).
"""

from __future__ import annotations

import numpy as np
import pytest
from _reference.ramp_fit_reference import OPT_SEGMENT_NAMES, fit_ramps_reference
from test_ramp_fit_kernel import GT, JUMP, SAT, random_ramps

import jwpipe
from jwpipe import ramp_fitting as rf
from jwpipe.errors import ConfigError

OPT_NAMES = (*OPT_SEGMENT_NAMES, "pedestal", "crmag")
RESULT_NAMES = ("slope", "err", "dq", "var_poisson", "var_rnoise")


def pedestal_factor(nframes, groupgap=0, drop_frames1=0):
    return ((nframes + 1) / 2.0 + drop_frames1) / (nframes + groupgap)


def kernel(case, *, nframes=1, groupgap=0, drop_frames1=0, **kw):
    c = dict(case)
    return rf.fit_ramps(c.pop("data"), c.pop("groupdq"), c.pop("gain"), c.pop("readnoise"),
                        GT, GT, nframes, **c, save_opt=True, groupgap=groupgap,
                        drop_frames1=drop_frames1, **kw)


def reference(case, *, nframes=1, groupgap=0, drop_frames1=0, group_range=None, **kw):
    c = dict(case)
    return fit_ramps_reference(c.pop("data"), c.pop("groupdq"), c.pop("gain"), c.pop("readnoise"),
                               GT, GT, nframes, median_mode="integration", save_opt=True,
                               groups=group_range,
                               pedestal_factor=pedestal_factor(nframes, groupgap, drop_frames1),
                               **c, **kw)


def assert_opt_matches(got, ref, rtol=1e-6):
    for name in OPT_NAMES:
        a, b = getattr(got, name), ref[name]
        assert a.dtype == np.float32, name
        assert a.shape == b.shape, (name, a.shape, b.shape)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=0, equal_nan=True, err_msg=name)


def assert_same(a, b):
    """Bit-identical arrays (NaN where NaN)."""
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


# ------------------------------------------------------------------------------------------------
# Parity with the slow reference
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_parity_random_ramps(seed):
    case = random_ramps(seed)
    _, _, opt = kernel(case)
    _, _, ref = reference(case)
    assert_opt_matches(opt, ref)
    assert opt.slope.shape[1] > 1 and opt.crmag.shape[1] > 1  # the case has multi-segment ramps
    assert np.any(opt.sigslope != 0) and np.any(opt.yint != 0) and np.any(opt.pedestal != 0)
    assert np.any(np.isnan(opt.crmag))  # jumps next to saturated groups


@pytest.mark.parametrize("ngroups", [1, 2, 3, 4])
def test_parity_short_ramps(ngroups):
    case = random_ramps(10 + ngroups, ngroups=ngroups)
    assert_opt_matches(kernel(case)[2], reference(case)[2])


def test_parity_one_group_and_zeroframe():
    case = random_ramps(7, nints=2, ngroups=6)
    rng = np.random.default_rng(7)
    zf = rng.uniform(-5.0, 400.0, (2, 9, 11)).astype(np.float32)
    zf[rng.random(zf.shape) < 0.2] = 0.0
    case = dict(case, zeroframe=zf)
    got = kernel(case, suppress_one_group=False)[2]
    assert_opt_matches(got, reference(case, suppress_one_group=False)[2])


def test_parity_frames_groupgap_and_group_range():
    case = random_ramps(5, ngroups=9)
    got = kernel(case, nframes=4, groupgap=1, drop_frames1=2, group_range=(2, 8))[2]
    ref = reference(case, nframes=4, groupgap=1, drop_frames1=2, group_range=(2, 8))[2]
    assert_opt_matches(got, ref)


def test_other_results_unchanged_and_blocking_invariant():
    """save_opt changes nothing else (all pixels take the per-pixel path, which gives the same
    numbers), and feeding integrations in blocks gives the same fitopt arrays."""
    case = random_ramps(4, nints=4)
    rate0, ints0 = rf.fit_ramps(case["data"], case["groupdq"], case["gain"], case["readnoise"],
                                GT, GT, 1, pixeldq=case["pixeldq"],
                                avg_dark_current=case["avg_dark_current"])
    rate1, ints1, opt1 = kernel(case)
    rate2, ints2, opt2 = kernel(case, block_ints=1)
    for name in RESULT_NAMES:
        assert_same(getattr(rate0, name), getattr(rate1, name))
        assert_same(getattr(ints0, name), getattr(ints1, name))
    for name in OPT_NAMES:
        assert_same(getattr(opt1, name), getattr(opt2, name))


def test_block_axes_grow_when_later_blocks_need_more():
    """Axis sizes are only known at the end: a late block with more segments widens them."""
    ngroups, shape = 8, (3, 4)
    data = np.tile((np.arange(ngroups, dtype=np.float32) * 10.0)[None, :, None, None],
                   (3, 1, *shape))
    gdq = np.zeros(data.shape, np.uint8)
    gdq[2, 2, 1, 1] = gdq[2, 5, 1, 1] = JUMP  # only the last integration has jumps
    acc = rf.RampFitAccumulator(shape, np.full(shape, 2.0, np.float32),
                                np.full(shape, 10.0, np.float32), 1.0, 1.0, 1, ngroups,
                                save_opt=True)
    for i in range(3):
        acc.add_block(data[i:i + 1], gdq[i:i + 1])
    opt = acc.optional_results()
    assert opt.slope.shape == (3, 3, *shape) and opt.crmag.shape == (3, 2, *shape)
    np.testing.assert_array_equal(opt.slope[2, :, 1, 1], [10.0, 10.0, 10.0])
    assert np.all(opt.slope[:2, 1:] == 0) and np.all(opt.crmag[:2] == 0)
    np.testing.assert_array_equal(opt.crmag[2, :, 1, 1], [10.0, 10.0])


def test_optional_results_need_save_opt():
    acc = rf.RampFitAccumulator((2, 2), np.ones((2, 2), np.float32),
                                np.ones((2, 2), np.float32), 1.0, 1.0, 1, 3)
    with pytest.raises(ConfigError, match="save_opt"):
        acc.optional_results()


# ------------------------------------------------------------------------------------------------
# Truth: noiseless ramps
# ------------------------------------------------------------------------------------------------

def test_truth_noiseless_ramps_with_jumps():
    """Noiseless linear ramps, TGROUP = TFRAME = 1 s, NFRAMES = 1 (group g read at g + 1 s): the
    segment slopes are the rate, CRMAG is the group difference at the jump (amplitude plus one
    group of signal), YINT the segment's line at group 0, and PEDESTAL the bias."""
    ngroups, ny, nx = 12, 4, 5
    rng = np.random.default_rng(3)
    rate = rng.integers(1, 200, (ny, nx)).astype(np.float64)
    bias = rng.integers(500, 20000, (ny, nx)).astype(np.float64)
    jumps = [(3, 250.0), (8, 1000.0)]  # (group, amplitude) in every pixel of integration 1
    g = np.arange(ngroups, dtype=np.float64)[:, None, None]
    data = np.empty((2, ngroups, ny, nx))
    data[:] = bias + rate * (g + 1.0)
    gdq = np.zeros(data.shape, np.uint8)
    for group, amp in jumps:
        data[1, group:] += amp
        gdq[1, group] = JUMP
    gdq[0, 10:, 0, 0] = SAT  # saturation: pedestal 0 by definition, slope still the rate
    data = data.astype(np.float32)
    ones = np.ones((ny, nx), np.float32)
    _, ints, opt = rf.fit_ramps(data, gdq, 2 * ones, 10 * ones, 1.0, 1.0, 1, save_opt=True)

    assert opt.slope.shape == (2, 3, ny, nx) and opt.crmag.shape == (2, 2, ny, nx)
    np.testing.assert_allclose(opt.slope[0, 0], rate, rtol=1e-6)
    assert np.all(opt.slope[0, 1:] == 0) and np.all(opt.weights[0, 1:] == 0)
    np.testing.assert_allclose(opt.slope[1], np.broadcast_to(rate, (3, ny, nx)), rtol=1e-6)
    for k, (_group, amp) in enumerate(jumps):
        np.testing.assert_allclose(opt.crmag[1, k] - rate, amp, rtol=1e-6)
    assert np.all(opt.crmag[0] == 0)
    level = bias + rate  # the line at group 0
    np.testing.assert_allclose(opt.yint[0, 0], level, rtol=1e-6)
    np.testing.assert_allclose(opt.yint[1, 0], level, rtol=1e-6)
    np.testing.assert_allclose(opt.yint[1, 1], level + 250, rtol=1e-6)
    np.testing.assert_allclose(opt.yint[1, 2], level + 1250, rtol=1e-6)
    expect = np.broadcast_to(bias, (2, ny, nx)).copy()
    expect[0, 0, 0] = 0.0
    np.testing.assert_allclose(opt.pedestal, expect, rtol=1e-6, atol=1e-3)
    assert ints.dq[0, 0, 0] & SAT
    # the variances and weights are the segment ones: 1/weights = (var_P + var_R)^2
    v = opt.var_poisson[1] + opt.var_rnoise[1]
    np.testing.assert_allclose(opt.weights[1], 1.0 / (v.astype(np.float64) ** 2), rtol=1e-5)
    assert np.all(opt.sigslope[1] > 0) and np.all(opt.sigyint[1] > 0)


# ------------------------------------------------------------------------------------------------
# Threads
# ------------------------------------------------------------------------------------------------

def test_thread_invariance():
    case = random_ramps(9, nints=2, ngroups=10, ny=64, nx=70)
    a = kernel(case, nthreads=1)
    b = kernel(case, nthreads=2)
    for name in OPT_NAMES:
        assert_same(getattr(a[2], name), getattr(b[2], name))
    for name in RESULT_NAMES:
        assert_same(getattr(a[1], name), getattr(b[1], name))


# ------------------------------------------------------------------------------------------------
# Products
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitopt_run(nircam_oracle, tmp_path_factory):
    out = tmp_path_factory.mktemp("fitopt")
    jwpipe.run("detector1", str(nircam_oracle["uncal"]), overrides=nircam_oracle["refs"],
               save_results=True, output_dir=str(out), steps={"ramp_fit": {"save_opt": True}})
    return out


def test_pipeline_writes_fitopt(fitopt_run):
    from jwpipe import datamodels

    [path] = fitopt_run.glob("*_fitopt.fits")
    assert path.name == "jw_nrc_sub160_g10_i3_s42_fitopt.fits"
    model = datamodels.open(path)
    assert type(model).__name__ == "RampFitOutputModel"
    assert model.meta.model_type == "RampFitOutputModel"
    nseg = model.slope.shape[1]
    for name in OPT_SEGMENT_NAMES:
        assert getattr(model, name).shape == (3, nseg, 160, 160), name
        assert getattr(model, name).dtype == np.float32
    assert model.pedestal.shape == (3, 160, 160)
    assert model.crmag.shape[0::2] == (3, 160) and model.crmag.shape[3] == 160
    assert nseg > 1 and model.crmag.shape[1] >= 1  # the exposure has cosmic rays

    [rate_path] = fitopt_run.glob("*_rate.fits")
    rate = datamodels.open(rate_path)
    for key in ("exposure.nints", "exposure.ngroups", "instrument.name", "instrument.detector",
                "subarray.name", "observation.date"):
        assert model.meta.get(key) == rate.meta.get(key), key
    assert model.meta.cal_step.ramp_fit == "COMPLETE"

    # one-segment pixel-integrations: the segment slope is the integration slope
    [ints_path] = fitopt_run.glob("*_rateints.fits")
    ints = datamodels.open(ints_path)
    slope = np.asarray(model.slope)
    single = np.all(slope[:, 1:] == 0, axis=1) & (slope[:, 0] != 0) & np.isfinite(ints.data)
    assert single.mean() > 0.5
    np.testing.assert_allclose(slope[:, 0][single], np.asarray(ints.data)[single], rtol=1e-5)


def test_fitopt_opens_with_stdatamodels(fitopt_run):
    sdm = pytest.importorskip("stdatamodels.jwst.datamodels")
    from jwpipe import datamodels

    [path] = fitopt_run.glob("*_fitopt.fits")
    ours = datamodels.open(path)
    with sdm.RampFitOutputModel(str(path)) as model:
        for name in OPT_NAMES:
            theirs = getattr(model, name)
            assert theirs.shape == getattr(ours, name).shape, name
            assert (theirs.dtype.kind, theirs.dtype.itemsize) == ("f", 4), name
        np.testing.assert_array_equal(model.crmag, ours.crmag)
        assert model.meta.exposure.nints == 3


def test_no_fitopt_without_save_opt(nircam_oracle, tmp_path):
    jwpipe.run("detector1", str(nircam_oracle["uncal"]), overrides=nircam_oracle["refs"],
               save_results=True, output_dir=str(tmp_path))
    assert list(tmp_path.glob("*_rate.fits")) and not list(tmp_path.glob("*_fitopt.fits"))


def test_standalone_step_writes_fitopt(nircam_oracle, tmp_path):
    """RampFitStep.run on the reference pipeline's ramp: the product is the array-level result."""
    from jwpipe import datamodels
    from jwpipe.steps.ramp_fit import RampFitStep

    refs = {k: nircam_oracle["refs"][k] for k in ("gain", "readnoise")}
    step = RampFitStep(overrides=refs, save_opt=True, save_results=True, output_dir=str(tmp_path))
    step.run(str(nircam_oracle["ramp"]))
    [path] = tmp_path.glob("*_fitopt.fits")
    assert path.name.endswith("_s42_fitopt.fits")
    saved = datamodels.open(path)
    ramp = datamodels.open(nircam_oracle["ramp"])
    gain = np.asarray(datamodels.open(refs["gain"]).data, np.float32)
    rn = np.asarray(datamodels.open(refs["readnoise"]).data, np.float32)
    exp = ramp.meta.exposure
    _, _, opt = rf.fit_ramps(ramp.data, ramp.groupdq, gain, rn, exp.group_time, exp.frame_time,
                             exp.nframes, pixeldq=ramp.pixeldq, save_opt=True,
                             groupgap=exp.groupgap or 0, drop_frames1=exp.drop_frames1 or 0,
                             avg_dark_current=(ramp.average_dark_current
                                               if ramp.has("average_dark_current") else None))
    for name in OPT_NAMES:
        np.testing.assert_array_equal(getattr(saved, name), getattr(opt, name), err_msg=name)
