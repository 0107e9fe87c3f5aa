"""emicorr: MIRI EMI removal against the simulator's injected EMI (known amplitude and phase).

The exposures are MIRIMAGE SUB256 (FASTR1, 10 groups, 3 integrations) with 218.52 Hz EMI of
4 DN amplitude at phase 0.3 (the synthetic waveform, peak-to-peak 2, so +-4 DN), and the same
exposure (same seed, so the same noise) without EMI. 218.52 Hz is out of phase with the SUB256
frame rate, so the EMI differs from group to group and biases slopes unless removed.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from _sim_fixtures import run_stage1

from jwpipe.errors import ConfigError, ReferenceFileError
from jwpipe.simulate import simulate_exposure
from jwpipe.simulate.emi import emi_reads
from jwpipe.steps import _emi
from jwpipe.steps.dq_init import DQInitStep
from jwpipe.steps.emicorr import EmiCorrStep

pytestmark = pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning")

EMI = {"Hz218a": (4.0, 0.3)}
SHAPE = dict(detector="MIRIMAGE", subarray="SUB256", ngroups=10, nints=3, seed=5)


@pytest.fixture(scope="module")
def exposures(sim_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("emi")
    with_emi = simulate_exposure(crds_path=sim_cache, output_dir=out / "emi", emi=EMI,
                                 **SHAPE).uncal_paths[0]
    clean = simulate_exposure(crds_path=sim_cache, output_dir=out / "clean",
                              **SHAPE).uncal_paths[0]
    return with_emi, clean


@pytest.fixture(scope="module")
def after_dq_init(exposures, sim_cache):
    return DQInitStep(crds_path=sim_cache).run(str(exposures[0]))


def _truth(model) -> np.ndarray:
    nints, ngroups, ny, nx = model.data.shape
    return np.stack([emi_reads(EMI, "SUB256", "FASTR1", ngroups, ny, nx, i)
                     for i in range(nints)]).astype(np.float64)


def _removed_error(before, after) -> tuple[float, float]:
    """RMS of (what the step removed - the injected EMI), and of the injected EMI (DN)."""
    truth = _truth(before)
    removed = np.asarray(before.data, np.float64) - np.asarray(after.data, np.float64)
    return float(np.sqrt(np.mean((removed - truth) ** 2))), float(np.sqrt(np.mean(truth ** 2)))


def test_simulated_reference_opens_as_emimodel(sim_cache):
    sdm = pytest.importorskip("stdatamodels.jwst.datamodels")
    path = next((sim_cache / "references" / "jwst" / "miri").glob("*_emicorr_*.asdf"))
    with sdm.EmiModel(str(path), strict_validation=True) as model:
        assert model.subarray_cases.SUB256.freqs.FAST == ["Hz218a"]
        assert model.frequencies.Hz218a.frequency == pytest.approx(218.52055)


def test_joint_fit_recovers_the_injected_emi(after_dq_init, sim_cache, caplog):
    """The fitted amplitude and phase are the injected ones, and what the step removes is the
    injected EMI to 1% RMS. Measured: amplitude 4.014, phase 0.3000, residual 0.009 DN RMS
    of 2.52 (0.35%; the reference pipeline's fit of the same data: 0.030 DN). Tolerances: 1%
    in amplitude and 0.002 in phase (2.5 and 2 times the measured errors, which come from the
    noise of ~60,000 quiet pixels)."""
    with caplog.at_level(logging.INFO, logger="jwpipe"):
        out = EmiCorrStep(crds_path=sim_cache, skip=False).run(after_dq_init)
    assert out.meta.cal_step.emicorr == "COMPLETE"
    fitted = [r.getMessage() for r in caplog.records if "amplitude" in r.getMessage()]
    amplitude = float(fitted[-1].split("amplitude ")[1].split(",")[0])
    phase = float(fitted[-1].split("phase ")[1])
    assert amplitude == pytest.approx(4.0, rel=0.01)
    assert abs(phase - 0.3) < 0.002
    error, signal = _removed_error(after_dq_init, out)
    assert error < 0.01 * signal, (error, signal)
    # The input model is untouched.
    assert not np.shares_memory(out.data, after_dq_init.data)


def test_fit_per_integration(after_dq_init, sim_cache):
    """``fit_ints_separately``: each integration fitted alone, from a third of the pixels'
    reads: residual within 2% RMS (measured ~0.5%)."""
    out = EmiCorrStep(crds_path=sim_cache, skip=False, fit_ints_separately=True).run(
        after_dq_init)
    error, signal = _removed_error(after_dq_init, out)
    assert error < 0.02 * signal, (error, signal)


def test_sequential_on_the_fly(after_dq_init, sim_cache):
    """``onthefly_corr_freq`` without a reference: the sequential fit (the reference pipeline's
    algorithm) takes the waveform from the binned, detrended reads of the first integration.
    Each pixel's line over 8 groups absorbs part of the EMI, so with 10 groups the waveform
    comes out weak: measured residual 0.607 DN RMS of 2.52 (24%), as the reference pipeline's
    own on-the-fly correction of these data (0.607 DN; with the reference waveform, scaled, both
    0.243 DN). Asserted: below 35%, i.e. the step removes most of the EMI."""
    out = EmiCorrStep(crds_path=sim_cache, skip=False, onthefly_corr_freq="218.52055",
                      algorithm="sequential").run(after_dq_init)
    assert out.meta.cal_step.emicorr == "COMPLETE"
    error, signal = _removed_error(after_dq_init, out)
    assert error < 0.35 * signal, (error, signal)
    with_reference = EmiCorrStep(crds_path=sim_cache, skip=False,
                                 algorithm="sequential").run(after_dq_init)
    error_ref, _ = _removed_error(after_dq_init, with_reference)
    assert error_ref < 0.15 * signal, (error_ref, signal)


def test_detector1_rates_lose_the_emi_error(exposures, sim_cache, tmp_path):
    """Through calwebb_detector1: the EMI adds variance to the rates (measured: their error
    against the truth grows from 6.113 to 6.326 DN/s RMS, an added 1.7 DN/s in quadrature);
    with emicorr the error is that of the same exposure without EMI (measured 6.1133 against
    6.1135). Asserted: less than 5% of the EMI's added variance remains. (The two exposures
    share their noise but not their digitisation: the EMI moves values across the integer DN
    steps, so the rates differ pixel by pixel at ~0.3 DN/s even when the EMI is removed
    perfectly; their error variances over ~190,000 pixel-integrations do not.) Streaming one
    integration per block gives identical products."""
    from _sim_fixtures import load_truth

    with_emi, clean = exposures
    truth = load_truth(next(clean.parent.glob("*_truth.npz")))["rate"]
    steps = {"emicorr": {"skip": False}}
    ref = run_stage1("detector1", clean, sim_cache, tmp_path / "clean", ramp=False)
    raw = run_stage1("detector1", with_emi, sim_cache, tmp_path / "raw", ramp=False)
    fixed = run_stage1("detector1", with_emi, sim_cache, tmp_path / "fixed", ramp=False,
                       steps=steps)
    blocks = run_stage1("detector1", with_emi, sim_cache, tmp_path / "blocks", ramp=False,
                        steps=steps, integrations_per_block=1)
    good = (ref.rateints["DQ"] == 0) & (fixed.rateints["DQ"] == 0) & (raw.rateints["DQ"] == 0)

    def error_variance(products):
        return float(np.mean((products.rateints["SCI"] - truth[None])[good] ** 2))

    added = error_variance(raw) - error_variance(ref)
    left = error_variance(fixed) - error_variance(ref)
    assert good.sum() > 100_000
    assert added > 1.0, added  # the EMI does bias the slopes
    assert abs(left) < 0.05 * added, (left, added)
    assert fixed.rate["header"]["S_MIREMI"] == "COMPLETE"
    assert raw.rate["header"]["S_MIREMI"] == "SKIPPED"  # skipped by default
    for ext in ("SCI", "ERR", "DQ"):
        np.testing.assert_array_equal(blocks.rateints[ext], fixed.rateints[ext], err_msg=ext)


def test_two_frequencies_are_removed_one_after_the_other(tmp_path):
    """SUB64 corrects 390.625 and 218.52 Hz (the synthetic reference's case; their phases move
    by 0.25 and 0.6 of a period from group to group): both injected, both removed, each fitted
    on data cleaned of the previous one (the reference pipeline's order). Measured: amplitudes
    2.92 and 2.12 for 3 and 2, residual 4.4% RMS: the first fit still has the second frequency
    in its data, which over this small array's 4,600 pixels does not average out. Asserted:
    below 8% (a wrong phase or a frequency left out would leave 50% or more)."""
    from jwpipe.simulate import make_crds_cache

    cache = make_crds_cache(tmp_path / "crds", detectors=["MIRIMAGE"], subarrays=["SUB64"],
                            filters=["F770W"], seed=0)
    both = {"Hz390": (3.0, 0.6), "Hz218a": (2.0, 0.1)}
    exp = simulate_exposure(detector="MIRIMAGE", subarray="SUB64", ngroups=8, nints=2, seed=2,
                            crds_path=cache, output_dir=tmp_path / "raw", emi=both,
                            cosmic_rays=0)
    before = DQInitStep(crds_path=cache).run(str(exp.uncal_paths[0]))
    after = EmiCorrStep(crds_path=cache, skip=False).run(before)
    nints, ngroups, ny, nx = before.data.shape
    truth = np.stack([emi_reads(both, "SUB64", "FASTR1", ngroups, ny, nx, i)
                      for i in range(nints)]).astype(np.float64)
    removed = np.asarray(before.data, np.float64) - np.asarray(after.data, np.float64)
    error = np.sqrt(np.mean((removed - truth) ** 2))
    assert error < 0.08 * np.sqrt(np.mean(truth ** 2))


def test_frequency_in_phase_with_the_frames_is_left_alone():
    """390.625 Hz has exactly 117 periods per SUB256 frame: the same EMI in every group, which
    no slope sees. The fit must find nothing to correct instead of dividing by ~0."""
    clock = _emi.ReadoutClock(ny=256, nx=256, ngroups=5, rowclocks=96, reset_clocks=29952,
                              nsamples=1)
    period = _emi.EmiFrequency("Hz390", 390.625).period
    assert clock.group_phase(period) == 0.0
    wave = _emi.PeriodicWave(np.sin(2 * np.pi * (np.arange(64) + 0.5) / 64))
    sums = _emi.JointSums(wave.n, clock.ngroups)
    rng = np.random.default_rng(0)
    # ramps holding the in-phase EMI (constant per bin) plus noise
    level = wave(_emi._bin_centres(wave.n) + 0.2)[:, None] * np.ones(clock.ngroups)
    sums.add(0.0, 1000 * (level + rng.normal(0, 0.1, level.shape)), np.full(wave.n, 1000.0))
    templates = _emi.JointTemplates(wave, clock.ngroups, clock.group_phase(period))
    assert _emi.fit_joint(sums, templates) == (0.0, 0.0)


def test_step_is_skipped_where_it_does_not_apply(sim_cache, tmp_path):
    nircam = simulate_exposure(detector="NRCA1", subarray="SUB160", ngroups=3, nints=1,
                               crds_path=sim_cache, output_dir=tmp_path / "nrc")
    out = EmiCorrStep(crds_path=sim_cache, skip=False, onthefly_corr_freq="390.625").run(
        str(nircam.uncal_paths[0]))
    assert out.meta.cal_step.emicorr == "SKIPPED"
    short = simulate_exposure(detector="MIRIMAGE", subarray="SUB256", ngroups=2, nints=1,
                              crds_path=sim_cache, output_dir=tmp_path / "short")
    out = EmiCorrStep(crds_path=sim_cache, skip=False).run(str(short.uncal_paths[0]))
    assert out.meta.cal_step.emicorr == "SKIPPED"


def test_bad_parameters_and_references_are_named(after_dq_init, sim_cache, tmp_path):
    with pytest.raises(ConfigError, match="algorithm"):
        EmiCorrStep(crds_path=sim_cache, skip=False, algorithm="fft").run(after_dq_init)
    with pytest.raises(ConfigError, match="onthefly_corr_freq"):
        EmiCorrStep(crds_path=sim_cache, skip=False, onthefly_corr_freq="fast").run(
            after_dq_init)
    import asdf

    path = next((sim_cache / "references" / "jwst" / "miri").glob("*_emicorr_*.asdf"))
    with asdf.open(path) as af:
        tree = {k: af.tree[k] for k in ("meta", "frequencies", "subarray_cases")}
        tree = asdf.treeutil.walk_and_modify(tree, lambda x: x)
        tree["frequencies"] = {"Hz218a": {"frequency": 218.52055}}  # no waveform
        broken = tmp_path / "broken_emicorr.asdf"
        asdf.AsdfFile(tree).write_to(broken)
    with pytest.raises(ReferenceFileError, match="broken_emicorr.asdf.*phase_amplitudes"):
        EmiCorrStep(crds_path=sim_cache, skip=False,
                    overrides={"emicorr": str(broken)}).run(after_dq_init)
