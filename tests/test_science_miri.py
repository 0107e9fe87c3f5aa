"""Stage-1 science against known truth on simulated MIRI imager exposures (the whole
calwebb_detector1, MIRI sequence: reset, rscd, lastframe...).

Two exposures, simulated once per test process (shared with test_edge_cases.py): MIRIMAGE SUB256,
FASTR1, 15 groups, 3 integrations, a 30 DN/s sky, a bright band and saturating spots
(``_sim_fixtures.science_scene``), cosmic rays at 3e-3 events per pixel per second.

- "default": every simulator effect (reset anomaly, RSCD transient, last-frame offset,
  non-linearity, IPC, dark, amplifier drifts...). Saturation and the MIRI group flags
  (test_edge_cases.py) are judged here, and the rate against the truth, which fails: see
  ``test_rate_matches_truth_with_nonlinearity`` (a simulator bug).
- "linear": the same scene without the non-linearity (and ``linearity=N/A`` in the pipeline) and
  without the amplifier drifts, which SUB256 has no reference columns to remove (the refpix step
  is rightly skipped there, as in the reference): the rate and ERR against the truth, cosmic
  rays and spurious jumps. On "default" the simulator bug curves every corrected ramp (its group
  differences grow by up to ~3% along the ramp), which the jump detector sees as jumps in bright
  pixels: spurious jumps there measure the bug, not the jump step.
"""

from __future__ import annotations

import numpy as np
import pytest
from _sim_fixtures import (
    build_cache,
    cosmic_ray_detection,
    describe,
    miri_exposure,
    saturation_timing,
    spurious_jumps,
    z_statistics,
)

pytestmark = pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning")


@pytest.fixture(scope="module")
def sim_cache(tmp_path_factory):
    """The process-wide synthetic CRDS cache (built once, see _sim_fixtures.build_cache)."""
    return build_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def default(sim_cache, tmp_path_factory):
    return miri_exposure(sim_cache, tmp_path_factory, "default")


@pytest.fixture(scope="module")
def linear(sim_cache, tmp_path_factory):
    return miri_exposure(sim_cache, tmp_path_factory, "linear")


def test_rate_error_normalised_by_err_is_unit_normal(linear):
    """(rate - truth)/ERR on clean pixels (DQ == 0, signal > 50 DN): |median| < 0.05, robust
    sigma 0.97-1.05, relative bias <= 1e-3 (issue 4's targets; the reference pipeline on its MIRI
    case: median +0.15, spread 1.22, bias +0.93% on faint pixels). ~5e4 pixels: sampling errors
    of the median and spread ~0.006 and ~0.004, so the bounds are the issue's, as they are."""
    truth, p = linear
    stats = z_statistics(p.rate["SCI"], p.rate["ERR"], p.rate["DQ"], truth["rate"],
                         truth["t_int"])
    print("MIRI z statistics:", describe(stats))
    assert stats["n"] > 20000, describe(stats)
    assert abs(stats["median_z"]) < 0.05, describe(stats)
    assert 0.97 <= stats["sigma_z"] <= 1.05, describe(stats)
    assert abs(stats["bias"]) <= 1e-3, describe(stats)


def test_rateints_match_truth_in_every_integration(linear):
    """Each integration's slope matches the truth: the reset anomaly differs between the first,
    second and later integrations, the RSCD transient between the first and the others, so a
    wrong reset/rscd handling shows in one integration only. Bounds as the exposure test, per
    integration (~5e4 pixels each)."""
    truth, p = linear
    for i in range(p.rateints["SCI"].shape[0]):
        stats = z_statistics(p.rateints["SCI"][i], p.rateints["ERR"][i], p.rateints["DQ"][i],
                             truth["rate"], truth["t_int"])
        print(f"MIRI integration {i}:", describe(stats))
        assert stats["n"] > 20000, describe(stats)
        assert abs(stats["median_z"]) < 0.05, describe(stats)
        assert 0.97 <= stats["sigma_z"] <= 1.05, describe(stats)
        assert abs(stats["bias"]) <= 1e-3, describe(stats)


@pytest.mark.xfail(strict=True, reason=(
    "simulator bug, jwpipe/simulate (detector.py simulate_integration -> _ext/src/simulate.c "
    "jw_sim_ramp, with refs.py DetectorFields._make_lincoeffs): the non-linear response is "
    "solved on the signal above the bias (sum c_k S^k = L, bias added afterwards in "
    "sim_readout), which is right for near-IR data whose superbias is subtracted before "
    "linearity, but MIRI has no superbias step: the linearity step (like the reference's) "
    "applies the polynomial to raw DN that include the ~11000 DN pedestal, so dL/dS = 1 + "
    "2 c2 (S + pedestal) is ~2.4% too steep at the pedestal and more along the ramp: measured "
    "MIRI rate bias +2.8% (signal < 1e3 DN) to +4.4% (> 2e4 DN), median z +9 over 5.8e4 "
    "pixels, while with the non-linearity off in both (the 'linear' exposure) the bias is "
    "3e-5. The oracle's own MIRI simulation (shared/data/oracle/miri_sub256) is consistent with "
    "the pipeline (reference bias +0.02% on bright pixels)."))
def test_rate_matches_truth_with_nonlinearity(default):
    """With the simulator's non-linearity on, the MIRI rate must match the truth to 1e-3 in every
    signal band (the issue's bias bound; the linear exposure shows the rest of the chain does)."""
    truth, p = default
    stats = z_statistics(p.rate["SCI"], p.rate["ERR"], p.rate["DQ"], truth["rate"],
                         truth["t_int"])
    print("MIRI with non-linearity:", describe(stats))
    assert stats["bands"], describe(stats)
    for band, figures in stats["bands"].items():
        assert abs(figures["bias"]) <= 1e-3, (band, describe(stats))


def _miri_cosmic_rays(truth, p):
    det = cosmic_ray_detection(truth, p.ramp["GROUPDQ"], p.ramp["PIXELDQ"],
                               bands=((0, 4), (4, 5), (5, 6), (4, 6), (6, np.inf)))
    print("MIRI cosmic rays:", describe(det))
    return det


def test_cosmic_rays_above_6_sigma_flagged(linear):
    """>= 99.5% of the single-pixel hits above 6 sigma flagged (issue 4; the reference on its
    MIRI case: 100%). Matching rule and significance as for NIRCam (``cosmic_ray_detection``);
    MIRI's DO_NOT_USE first and last groups make the differences touching them unusable, and hits
    there are left out. ~1100 hits: binomial error ~0.2%, inside the bound's margin."""
    truth, p = linear
    det = _miri_cosmic_rays(truth, p)
    assert det["bands"][(6, np.inf)]["n"] >= 500, describe(det)
    assert det["bands"][(6, np.inf)]["fraction"] >= 0.995, describe(det)


@pytest.mark.xfail(strict=True, reason=(
    "jump detection misses the issue's 4-6 sigma target on MIRI too (jwpipe/jump_detection.py "
    "-> _ext/src/jump.c, rejection_threshold 4 as in the reference: detection probability "
    "~Phi(s - 4) for a hit of significance s). Measured: 75.7% of 148 single-pixel hits at "
    "4-6 sigma (4-5 sigma 67%, 5-6 sigma 85%); reference on its MIRI case 81%."))
def test_cosmic_rays_4_to_6_sigma_flagged(linear):
    """>= 85% of the single-pixel hits at 4-6 sigma flagged (issue 4; the reference on its MIRI
    case: 81%). ~150 hits: binomial error ~3%."""
    truth, p = linear
    det = _miri_cosmic_rays(truth, p)
    assert det["bands"][(4, 6)]["n"] >= 100, describe(det)
    assert det["bands"][(4, 6)]["fraction"] >= 0.85, describe(det)


def test_spurious_jumps_rare(linear):
    """At most 1e-4 spurious JUMP_DET per clean pixel-group (issue 4; the reference on its MIRI
    case: 1.0e-3). ~2e6 clean pixel-groups: 1e-4 is ~200 flags, a Poisson error of 7%."""
    truth, p = linear
    sp = spurious_jumps(truth, p.ramp["GROUPDQ"], p.ramp["PIXELDQ"])
    print("MIRI spurious jumps:", describe(sp))
    assert sp["n_clean"] > 1_000_000, describe(sp)
    assert sp["rate"] <= 1e-4, describe(sp)


def test_saturation_flagged_from_the_right_group(default):
    """As for NIRCam: every truth-saturated pixel-integration flagged by its truth group, no
    unexplained early flag, saturation kept to the end of the ramp (exact counts: rules)."""
    truth, p = default
    sat = saturation_timing(truth, p.ramp["GROUPDQ"], p.ramp["PIXELDQ"])
    print("MIRI saturation:", describe(sat))
    assert sat["n_saturated"] >= 300, describe(sat)
    assert sat["missed"] == 0, describe(sat)
    assert sat["early"] == 0, describe(sat)
    assert sat["not_kept"] == 0, describe(sat)
