"""Stage-1 science against known truth: the whole calwebb_detector1 on simulated NIRCam exposures.

Issue 4, "Accuracy": (rate - truth)/ERR is a unit normal on clean pixels, the rate is unbiased,
injected cosmic rays are flagged (>= 99.5% above 6 sigma, >= 85% at 4-6 sigma) with at most 1e-4
spurious jumps per clean pixel-group, saturated pixels are flagged from the right group and the
non-linearity correction leaves no bias trend with signal.

Two exposures per readout pattern (RAPID and BRIGHT2, each simulated once per test process,
~1-2 s each): NRCA1 SUB320, 10 groups, 4 integrations, a scene from a 20 DN/s sky to just below
saturation plus saturating spots (``_sim_fixtures.science_scene``), BRIGHT2 at half the rates so
that both reach the same signal.

- "all": every detector effect the simulator has (Poisson and read noise, amplifier drifts and
  1/f noise, dark current, IPC, non-linearity, saturation) and cosmic rays at 4e-3 events per
  pixel per second (several hundred single-pixel hits in the 4-6 sigma band): cosmic rays,
  spurious jumps, saturation, products.
- "variance": the same without the correlated noise (amplifier drifts, 1/f) and with the
  default cosmic-ray rate: (rate - truth)/ERR and the non-linearity (see
  ``test_rate_error_normalised_by_err_is_unit_normal`` for why).

The pipeline runs with its defaults (only ``save_calibrated_ramp`` for the group DQ). Every
figure is printed (``pytest -s``) and in the assertion message.
"""

from __future__ import annotations

import numpy as np
import pytest
from _sim_fixtures import (
    SIGNAL_BANDS,
    cosmic_ray_detection,
    describe,
    grow,
    load_truth,
    once,
    run_stage1,
    saturation_timing,
    science_scene,
    spurious_jumps,
    step_test_limits,
    z_statistics,
)

from jwpipe import dq
from jwpipe.jump_detection import one_sided_threshold
from jwpipe.simulate import simulate_exposure

pytestmark = pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning")


NGROUPS, NINTS = 10, 4
#: Same total signal for both patterns: BRIGHT2 groups last twice as long (TGROUP = 2 TFRAME).
PEAK = {"RAPID": 3800.0, "BRIGHT2": 1900.0}
PATTERNS = ["RAPID", "BRIGHT2"]


def _simulate_and_run(cache, tmp_path_factory, readpatt, kind):
    """``kind`` "all": every simulator effect, cosmic rays at 4e-3 /pixel/s. "variance": the
    same without the correlated noise (amplifier drifts, 1/f) and with the default cosmic-ray
    rate, for the tests of the variance model (see
    ``test_rate_error_normalised_by_err_is_unit_normal``)."""
    out = tmp_path_factory.mktemp(f"nrc_{kind}_{readpatt.lower()}")
    scene = science_scene(320, 320, photmjsr=0.22, background_dns=20.0, peak_dns=PEAK[readpatt])
    effects = dict(cosmic_rays=4e-3) if kind == "all" else dict(correlated=False)
    exp = simulate_exposure(detector="NRCA1", subarray="SUB320", readpatt=readpatt,
                            ngroups=NGROUPS, nints=NINTS, crds_path=cache, output_dir=out / "raw",
                            seed=11, scene=scene, **effects)
    products = run_stage1("detector1", exp.uncal_path, cache, out / "products")
    return load_truth(exp.truth_path), products


def _exposure(cache, tmp_path_factory, readpatt, kind):
    return once(("nrc_science", readpatt, kind),
                lambda: _simulate_and_run(cache, tmp_path_factory, readpatt, kind))


@pytest.fixture(scope="module", params=PATTERNS)
def science(request, sim_cache, tmp_path_factory):
    """Every effect on: cosmic rays, saturation, products."""
    return _exposure(sim_cache, tmp_path_factory, request.param, "all")


@pytest.fixture(scope="module", params=PATTERNS)
def variance(request, sim_cache, tmp_path_factory):
    """Without correlated noise: the rate and its ERR."""
    return _exposure(sim_cache, tmp_path_factory, request.param, "variance")


@pytest.fixture(scope="module")
def rapid_variance(sim_cache, tmp_path_factory):
    return _exposure(sim_cache, tmp_path_factory, "RAPID", "variance")


def test_products_complete(science):
    truth, p = science
    assert p.rate["SCI"].shape == (320, 320)
    assert p.rateints["SCI"].shape == (NINTS, 320, 320)
    assert p.ramp["GROUPDQ"].shape == (NINTS, NGROUPS, 320, 320)
    for key in ("S_DQINIT", "S_SATURA", "S_IPC", "S_SUPERB", "S_REFPIX", "S_LINEAR", "S_DARK",
                "S_JUMP", "S_RAMP"):
        assert p.header[key] == "COMPLETE", key


def test_rate_error_normalised_by_err_is_unit_normal(variance):
    """(rate - truth)/ERR on clean pixels (DQ == 0, truth signal > 50 DN): median ~0, robust
    sigma 0.97-1.05, relative bias <= 1e-3 (issue 4, "Poisson and read-noise variances are
    right"; the reference pipeline: spread 1.01-1.06, bias <= 4e-4).

    On the exposure without correlated noise: the simulator's amplifier drifts and 1/f noise are
    not part of any pipeline's ERR, and on a one-output subarray the refpix step (the reference
    algorithm: per-group odd/even means of the 4 reference rows, which carry their own 1/f noise)
    leaves a common offset per group shared by all pixels. That moves the median z of a whole
    exposure by up to ~0.1 at random (see ``test_all_effects_rate_sanity``), which says nothing
    about the variance model this test is about.

    Tolerances: the median and spread bounds are the issue's targets. With ~9e4 pixels their
    sampling errors are ~0.004 (1.25/sqrt(n)) and ~0.003, far inside the bounds, so a pass or
    fail is decided by the pipeline, not by chance. The per-band figures (read-noise- to
    Poisson-dominated) are printed for the report.
    """
    truth, p = variance
    stats = z_statistics(p.rate["SCI"], p.rate["ERR"], p.rate["DQ"], truth["rate"],
                         truth["t_int"])
    print("z statistics:", describe(stats))
    assert stats["n"] > 20000, describe(stats)  # enough pixels for the figures to mean anything
    assert abs(stats["median_z"]) < 0.05, describe(stats)
    assert 0.97 <= stats["sigma_z"] <= 1.05, describe(stats)
    assert abs(stats["bias"]) <= 1e-3, describe(stats)


def test_rateints_error_normalised_by_err(variance):
    """The same per integration (each integration's slope against the truth, with its own ERR).

    Tolerances: the issue's median and spread bounds, per integration (~9e4 pixels each, sampling
    errors as above). The per-integration Poisson variance comes from that integration's own
    median rate (documented in ramp_fitting.py), which the bounds must absorb too.
    """
    truth, p = variance
    for i in range(NINTS):
        stats = z_statistics(p.rateints["SCI"][i], p.rateints["ERR"][i], p.rateints["DQ"][i],
                             truth["rate"], truth["t_int"])
        print(f"integration {i}:", describe(stats))
        assert stats["n"] > 20000, describe(stats)
        assert abs(stats["median_z"]) < 0.05, describe(stats)
        assert 0.97 <= stats["sigma_z"] <= 1.05, describe(stats)


def test_all_effects_rate_sanity(science):
    """With every effect on (correlated noise and a high cosmic-ray rate) the rate still matches
    the truth, within bounds widened for the correlated noise no stage-1 step removes on this
    subarray: |median z| < 0.15 and spread <= 1.08 (the measured common-mode shift is up to
    ~0.1; the reference reached 1.05 on its own NIRCam case), relative bias <= 1e-3."""
    truth, p = science
    stats = z_statistics(p.rate["SCI"], p.rate["ERR"], p.rate["DQ"], truth["rate"],
                         truth["t_int"])
    print("z statistics, every effect on:", describe(stats))
    assert stats["n"] > 20000, describe(stats)
    assert abs(stats["median_z"]) < 0.15, describe(stats)
    assert 0.97 <= stats["sigma_z"] <= 1.08, describe(stats)
    assert abs(stats["bias"]) <= 1e-3, describe(stats)


def test_nonlinearity_leaves_no_bias_trend_with_signal(rapid_variance):
    """Bright unsaturated pixels (never within the saturation margin, more than 4 px from any
    saturating pixel, DQ == 0) agree with the truth to the Poisson level at every signal level,
    up to ~40k DN where the linearity correction is ~6%.

    Tolerances per signal bin (each holds >= 1000 pixels): |median z| <= 0.1 (the sampling error
    of a median of 1000 unit normals is 0.04, so 0.1 is 2.5 of those: a trend of 0.1 sigma of the
    Poisson noise would fail); robust spread 0.95-1.05 (the Poisson-dominated variance must be
    right); |median relative error| <= 1e-3 (the issue's bias bound, in every bin).
    """
    truth, p = rapid_variance
    signal = truth["rate"].astype(np.float64) * float(truth["t_int"])
    unsaturated = ~grow((truth["sat_margin_group"] >= 0).any(axis=0), 4)
    edges = [5e3, 1e4, 2e4, 3e4, 4e4, 6e4]
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = unsaturated & (signal >= lo) & (signal < hi)
        stats = z_statistics(p.rate["SCI"], p.rate["ERR"], p.rate["DQ"], truth["rate"],
                             truth["t_int"], select=sel)
        stats.pop("bands")
        rows.append(((lo, hi), stats))
        print(f"signal {lo:.0f}-{hi:.0f} DN:", describe(stats))
    populated = [(b, s) for b, s in rows if s["n"] >= 1000]
    assert len(populated) >= 4, describe(dict(rows))  # the scene covers 5k to 40k DN
    assert max(b[0] for b, _ in populated) >= 3e4, describe(dict(rows))
    for band, stats in populated:
        assert abs(stats["median_z"]) <= 0.1, (band, describe(stats))
        assert 0.95 <= stats["sigma_z"] <= 1.05, (band, describe(stats))
        assert abs(stats["bias"]) <= 1e-3, (band, describe(stats))


def test_cosmic_rays_above_6_sigma_flagged(science):
    """>= 99.5% of the single-pixel hits above 6 sigma get JUMP_DET at their group (or the next
    one for a hit split across a group boundary; see ``cosmic_ray_detection`` for the matching
    rule and the significance). Several thousand hits: the binomial error of the fraction is
    < 0.1%, so the issue's bound is asserted as is."""
    truth, p = science
    det = cosmic_ray_detection(truth, p.ramp["GROUPDQ"], p.ramp["PIXELDQ"])
    print("cosmic rays:", describe(det))
    band = det["bands"][(6, np.inf)]
    assert band["n"] >= 2000, describe(det)
    assert band["fraction"] >= 0.995, describe(det)


#: Why RAPID still misses the 4-6 sigma target (BRIGHT2 meets it); applied to that case only.
RAPID_4_TO_6_XFAIL = (
    "4-6 sigma recall of RAPID below 85%: measured 77.9% (4-5 sigma 67%, 5-6 sigma 90%; 802 "
    "single-pixel hits), spurious 7.0e-5 per clean pixel-group. That is what a per-pixel test "
    "can do here: with the true noise the jump step's statistic finds 77.1% +- 1.4% of these "
    "hits at its threshold, and even with the rate known exactly 84.4% "
    "(test_4_to_6_sigma_recall_is_the_per_pixel_limit). 85% needs the rate of several "
    "integrations (pool_integrations=True: 83.2%, as predicted for a rate pooled over the 4 "
    "integrations, 82.8% +- 1.3%; not the default, since it assumes the rate is the same in "
    "every integration) and a lower threshold, spending the whole 1e-4 spurious "
    "budget on white noise (known-rate limit 86.6% at z > 3.719). BRIGHT2 reaches 86.6% "
    "because hits arriving between its two frames are tested with their own template "
    "(split_hits).")


def test_cosmic_rays_4_to_6_sigma_flagged(science, request):
    """>= 85% of the single-pixel hits at 4-6 sigma are flagged (issue 4; the reference
    pipeline: 69-84%). With 500-2000 hits in the band the binomial error is 0.8-1.7%; the bound is
    the issue's target. Measured (``method="gls_positive"``, the default): BRIGHT2 86.6%
    (4-5 sigma 79%, 5-6 sigma 95%; 2052 hits; 70.8% with the symmetric test); RAPID 77.9%,
    strict xfail (see ``RAPID_4_TO_6_XFAIL``)."""
    if request.node.callspec.params["science"] == "RAPID":
        request.applymarker(pytest.mark.xfail(strict=True, reason=RAPID_4_TO_6_XFAIL))
    truth, p = science
    det = cosmic_ray_detection(truth, p.ramp["GROUPDQ"], p.ramp["PIXELDQ"],
                               bands=((0, 2), (2, 4), (4, 5), (5, 6), (4, 6), (6, np.inf)))
    print("cosmic rays by significance:", describe(det))
    band = det["bands"][(4, 6)]
    assert band["n"] >= 500, describe(det)
    assert band["fraction"] >= 0.85, describe(det)


def test_spurious_jumps_rare(science):
    """At most 1e-4 JUMP_DET flags per clean pixel-group (issue 4; the reference: 0.4-3.4e-4).
    ``spurious_jumps`` defines the clean pixel-groups (no injected deposit within +-1 pixel, not
    in the flagged region of a real hit, usable difference, away from saturating pixels). Over
    ~3e6 clean pixel-groups, 1e-4 is ~300 flags: a Poisson error of 6%, so the bound is asserted
    as is. The rate per signal band is printed for the report.

    Measured: RAPID 7.0e-5 (signal < 1e3 DN: 7.0e-5; > 2e4 DN: 6.4e-5), BRIGHT2 4.9e-5 (6.6e-5;
    4.4e-5); 7.5e-5 and 5.1e-5 before the jump step's read noise included what the IPC
    deconvolution adds to it (4% in variance). The simulator's 1/f row noise, which the refpix
    step cannot remove on this one-output subarray, is taken out for the test by the jump
    step's common-mode removal (``common_mode``); without it: 1.5e-4 and 1.9e-4 (faint pixels
    3.1e-4 and 4.8e-4)."""
    truth, p = science
    sp = spurious_jumps(truth, p.ramp["GROUPDQ"], p.ramp["PIXELDQ"])
    print("spurious jumps:", describe(sp))
    assert sp["n_clean"] > 1_000_000, describe(sp)
    assert sp["rate"] <= 1e-4, describe(sp)


def test_symmetric_jump_test_keeps_the_previous_results(sim_cache, tmp_path_factory):
    """``method="gls", common_mode=False`` is the symmetric test the jump step used before the
    one-sided test and the common-mode removal (kept for comparisons): on the RAPID exposure it
    finds 600 of 802 hits at 4-6 sigma with 448 spurious flags (see RAPID_4_TO_6_XFAIL and
    test_spurious_jumps_rare for the default's). Exact counts, to catch any unintended change
    of that test; 601 and 491 before its read noise included the IPC deconvolution's share."""
    truth, p = _exposure(sim_cache, tmp_path_factory, "RAPID", "all")
    uncal = next((p.folder.parent / "raw").glob("*_uncal.fits"))
    old = run_stage1("detector1", uncal, sim_cache, p.folder.parent / "products_gls",
                     steps={"jump": {"method": "gls", "common_mode": False}})
    det = cosmic_ray_detection(truth, old.ramp["GROUPDQ"], old.ramp["PIXELDQ"])
    sp = spurious_jumps(truth, old.ramp["GROUPDQ"], old.ramp["PIXELDQ"])
    print("symmetric test:", describe(det), describe(sp))
    assert (det["bands"][(4, 6)]["n"], det["bands"][(4, 6)]["flagged"]) == (802, 600)
    assert sp["n_spurious"] == 448


#: sum(K**2) of the simulated NIRCam IPC deconvolution kernel (centre 1.02, four -0.005).
NIRCAM_READ_VARIANCE_SCALE = 1.02 ** 2 + 4 * 0.005 ** 2


def test_4_to_6_sigma_recall_is_the_per_pixel_limit(sim_cache, tmp_path_factory):
    """The RAPID 4-6 sigma recall is what a per-pixel step test can reach (issue 4 asks 85%).

    ``step_test_limits`` gives, from the truth, each hit's chance of being found by the jump
    step's statistic with the true noise (rate fitted from the hit's own integration), and with
    the rate known exactly. Measured: flagged 77.9%, predicted 77.1% +- 1.4% (one standard
    deviation of the flagged fraction over 802 independent hits): asserted within 3 of them.
    With the rate known exactly the limit is 84.4% at the default threshold: asserted below
    85%, the fact behind RAPID_4_TO_6_XFAIL (if the simulator changes so that it is not, that
    xfail must be revisited).

    ``pool_integrations=True`` fits one rate to the 4 integrations: then the recall is what
    the statistic finds with that rate (``pooled_rate``, between the own-rate and known-rate
    figures; measured 83.2%, asserted within 3 standard deviations of it) at the same
    spurious-flag rate (asserted <= 1e-4)."""
    truth, p = _exposure(sim_cache, tmp_path_factory, "RAPID", "all")
    threshold = one_sided_threshold(4.0)
    lim = step_test_limits(truth, p.ramp["GROUPDQ"], p.ramp["PIXELDQ"], threshold=threshold,
                           read_variance_scale=NIRCAM_READ_VARIANCE_SCALE)
    print("RAPID 4-6 sigma, per-pixel limits:", describe(lim))
    assert lim["n"] >= 500, describe(lim)
    assert abs(lim["flagged"] - lim["own_rate"]) <= 3 * lim["own_rate_sd"], describe(lim)
    assert lim["known_rate"] < 0.85, describe(lim)

    uncal = next((p.folder.parent / "raw").glob("*_uncal.fits"))
    pooled = run_stage1("detector1", uncal, sim_cache, p.folder.parent / "products_pooled",
                        steps={"jump": {"pool_integrations": True}})
    det = cosmic_ray_detection(truth, pooled.ramp["GROUPDQ"], pooled.ramp["PIXELDQ"])
    sp = spurious_jumps(truth, pooled.ramp["GROUPDQ"], pooled.ramp["PIXELDQ"])
    print("pooled:", describe(det), describe(sp))
    recall = det["bands"][(4, 6)]["fraction"]
    assert abs(recall - lim["pooled_rate"]) <= 3 * lim["pooled_rate_sd"], describe(det)
    assert sp["rate"] <= 1e-4, describe(sp)


def test_saturation_flagged_from_the_right_group(science):
    """Every truth-saturated pixel-integration is SATURATED from its truth group (or earlier only
    within the read-noise margin, or through the deliberate growth of saturation into neighbours;
    ``saturation_timing``), no SATURATED flag appears where nothing saturates nearby, and a
    saturated group is never followed by an unflagged one. All counts must be exactly 0: these
    are rules, not statistics."""
    truth, p = science
    sat = saturation_timing(truth, p.ramp["GROUPDQ"], p.ramp["PIXELDQ"])
    print("saturation:", describe(sat))
    assert sat["n_saturated"] >= 500, describe(sat)  # the spots saturate in every group
    assert sat["missed"] == 0, describe(sat)
    assert sat["early"] == 0, describe(sat)
    assert sat["not_kept"] == 0, describe(sat)
    # The rate product says which pixels saturated in some integration.
    ever = (p.ramp["GROUPDQ"] & dq.SATURATED).any(axis=(0, 1))
    np.testing.assert_array_equal((p.rate["DQ"] & dq.SATURATED) != 0, ever)


def test_signal_bands_cover_read_noise_to_poisson(rapid_variance):
    """The scene really spans the regimes the figures are reported for (a guard on the scene)."""
    truth, _ = rapid_variance
    signal = truth["rate"] * float(truth["t_int"])
    for lo, hi in SIGNAL_BANDS:
        assert ((signal >= lo) & (signal < hi)).sum() > 2000, (lo, hi)
