"""Stage 1 end to end on the shared inputs: agreement with the reference pipeline's outputs,
streaming and threading invariance, products and their metadata."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

import jwpipe
from jwpipe import dq

#: For the comparisons with the reference's outputs: no extended events (the oracle runs had
#: none) and the reference's choice of ramp-fit weighting power (jwpipe's default is unbiased
#: and differs by a fraction of the noise where the two choices differ; see
#: tests/test_ramp_fit_kernel.py::test_oracle_default_power_snr).
NO_EXTENDED = {"jump": {"expand_large_events": False, "find_showers": False}}
REFERENCE_CHOICES = {**NO_EXTENDED, "ramp_fit": {"power_snr": "endpoints"}}


def _run(case, out, **options):
    steps = options.pop("steps", REFERENCE_CHOICES)
    return jwpipe.run("detector1", str(case["uncal"]), overrides=case["refs"], steps=steps,
                      save_results=True, output_dir=str(out), **options)


def _products(case, tmp_path_factory, name, **options):
    """A new folder holding the products of ``_run(case, ..., **options)``."""
    out = tmp_path_factory.mktemp(name)
    _run(case, out, **options)
    return out


@pytest.fixture(scope="module")
def nircam_run(nircam_oracle, tmp_path_factory):
    return _products(nircam_oracle, tmp_path_factory, "nircam", save_calibrated_ramp=True)


@pytest.fixture(scope="module")
def miri_run(miri_oracle, tmp_path_factory):
    return _products(miri_oracle, tmp_path_factory, "miri", save_calibrated_ramp=True)


def _ours(folder, suffix):
    return next(folder.glob(f"*_{suffix}.fits"))


@pytest.mark.parametrize("case_name", ["nircam", "miri"])
def test_rate_agrees_with_reference_pipeline(case_name, nircam_oracle, miri_oracle, nircam_run,
                                             miri_run):
    """Where jwpipe and the reference flag the same groups, the rate products must agree: the
    chain (saturation ... dark) reproduces the reference ramp bit for bit and ramp fitting follows
    the same algorithm. Pixels whose jump decisions differ are judged against the truth instead
    (test_truth_recovery_...)."""
    case, out = (nircam_oracle, nircam_run) if case_name == "nircam" else (miri_oracle, miri_run)
    with fits.open(case["ramp"]) as ref_ramp, fits.open(_ours(out, "ramp")) as our_ramp:
        np.testing.assert_array_equal(our_ramp["SCI"].data, ref_ramp["SCI"].data)
        same_groups = (ref_ramp["GROUPDQ"].data == our_ramp["GROUPDQ"].data).all(axis=(0, 1))
    with fits.open(case["rate"]) as ref, fits.open(_ours(out, "rate")) as ours:
        same_jumps = same_groups & (ref["DQ"].data == ours["DQ"].data)
        # Different jump decisions must stay rare (they are judged against truth elsewhere).
        assert same_jumps.mean() > (0.99 if case_name == "nircam" else 0.93)
        for ext in ("SCI", "ERR", "VAR_POISSON", "VAR_RNOISE"):
            a, b = ref[ext].data[same_jumps], ours[ext].data[same_jumps]
            finite = np.isfinite(a)
            np.testing.assert_array_equal(np.isfinite(b), finite, err_msg=ext)
            # float32 results of the same double-precision algorithm: 1e-5 relative.
            np.testing.assert_allclose(b[finite], a[finite], rtol=1e-5, atol=1e-7, err_msg=ext)


def test_rateints_agree_except_documented_poisson_variance(nircam_oracle, nircam_run):
    """Per-integration slopes, read-noise variances and DQ match; the per-integration Poisson
    variance uses each integration's own median rate (the reference: the exposure mean), so it
    differs by the ratio of the two, which for this constant scene is a few per cent."""
    with fits.open(nircam_oracle["ramp"]) as ref_ramp, fits.open(_ours(nircam_run, "ramp")) as mine:
        same_groups = (ref_ramp["GROUPDQ"].data == mine["GROUPDQ"].data).all(axis=1)
    with fits.open(nircam_oracle["rateints"]) as ref, fits.open(_ours(nircam_run, "rateints")) \
            as ours:
        same = same_groups & (ref["DQ"].data == ours["DQ"].data)
        for ext in ("SCI", "VAR_RNOISE"):
            a, b = ref[ext].data[same], ours[ext].data[same]
            ok = np.isfinite(a)
            np.testing.assert_allclose(b[ok], a[ok], rtol=1e-5, atol=1e-7, err_msg=ext)
        a, b = ref["VAR_POISSON"].data[same], ours["VAR_POISSON"].data[same]
        ok = np.isfinite(a) & (a > 0)
        ratio = b[ok] / a[ok]
        assert abs(np.median(ratio) - 1) < 0.02
        assert same.mean() > 0.99


@pytest.fixture(scope="module")
def nircam_default_run(nircam_oracle, tmp_path_factory):
    """jwpipe's defaults (extended events off, as in the oracle runs)."""
    return _products(nircam_oracle, tmp_path_factory, "nircam_default", steps=NO_EXTENDED)


def test_truth_recovery_matches_or_beats_the_reference(nircam_oracle, nircam_default_run):
    """jwpipe's defaults against the truth on the shared NIRCam input, and against the reference.

    Bias: the median relative error over ~22,000 clean pixels has a sampling error of 2.6e-4
    (robust spread 3.1% per pixel), and for an unbiased fit of these Poisson-skewed ramps the
    median sits ~-2.7e-4 below the mean (measured on ideal ramps with the same rates, gain and
    read noise); hence the 1e-3 bound. Measured -8.6e-4 (z spread 1.044); the reference -2.9e-4
    on the same pixels (jwpipe with the reference's power choice: -2.3e-4, spread 1.052). The
    difference is the reference's own high bias: the background pixels sit at S/N 18.5-19.5 per
    ramp, just below its S/N=20 weighting threshold, where picking the power from the ramp's end
    points biases the slope by +5.8e-4 (23 sigma, ideal ramps; jwpipe's stepwise choice: -1.5e-5 +-
    2.5e-5), which here happens to offset a negative error of the data.
    """
    truth = np.load(nircam_oracle["truth"])
    with fits.open(_ours(nircam_default_run, "rate")) as ours, \
            fits.open(nircam_oracle["rate"]) as ref:
        rate, err, flags = ours["SCI"].data, ours["ERR"].data, ours["DQ"].data
        clean = (flags == 0) & (truth["rate"] * float(truth["t_int"]) > 50)
        z = ((rate - truth["rate"]) / err)[clean]
        bias = np.median((rate - truth["rate"])[clean] / truth["rate"][clean])
        spread = 1.4826 * np.median(np.abs(z - np.median(z)))
        ref_z = ((ref["SCI"].data - truth["rate"]) / ref["ERR"].data)[clean]
        ref_spread = 1.4826 * np.median(np.abs(ref_z - np.median(ref_z)))
    assert abs(bias) < 1e-3
    assert abs(np.median(z)) < 0.05
    assert spread <= ref_spread * 1.01 and 0.97 <= spread <= 1.07


def test_products_and_metadata(nircam_run):
    names = sorted(p.name for p in nircam_run.iterdir())
    assert names == ["jw_nrc_sub160_g10_i3_s42_ramp.fits", "jw_nrc_sub160_g10_i3_s42_rate.fits",
                     "jw_nrc_sub160_g10_i3_s42_rateints.fits"]
    with fits.open(_ours(nircam_run, "rate")) as rate:
        header = rate[0].header
        assert header["DATAMODL"] == "ImageModel" and rate["SCI"].header["BUNIT"] == "DN/s"
        for key in ("S_DQINIT", "S_SATURA", "S_IPC", "S_SUPERB", "S_REFPIX", "S_LINEAR",
                    "S_DARK", "S_JUMP", "S_RAMP"):
            assert header[key] == "COMPLETE", key
        for key in ("S_PERSIS", "S_CHGMIG", "S_CLNFNS", "S_GANSCL"):
            assert header[key] == "SKIPPED", key
        assert header["R_GAIN"].startswith("crds://")
        assert rate["SCI"].data.dtype.kind == "f" and rate["DQ"].data.dtype.kind in "iu"
    with fits.open(_ours(nircam_run, "ramp")) as ramp:
        assert ramp[0].header["DATAMODL"] == "RampModel"
        assert ramp["SCI"].data.shape == (3, 10, 160, 160)
        assert (ramp["GROUPDQ"].data & dq.JUMP_DET).any()
    sdm = pytest.importorskip("stdatamodels.jwst.datamodels")
    for suffix, model in (("rate", "ImageModel"), ("rateints", "CubeModel"),
                          ("ramp", "RampModel")):
        with sdm.open(_ours(nircam_run, suffix)) as opened:
            assert type(opened).__name__ == model
            assert opened.meta.cal_step.ramp_fit in ("COMPLETE", None)


def test_streaming_and_threads_do_not_change_results(nircam_oracle, nircam_run, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    _run(nircam_oracle, one, integrations_per_block=1, threads=2)
    for suffix in ("rate", "rateints"):
        with fits.open(_ours(one, suffix)) as a, fits.open(_ours(nircam_run, suffix)) as b:
            for ext in ("SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE"):
                np.testing.assert_array_equal(a[ext].data, b[ext].data, err_msg=ext)


def test_input_is_never_modified(nircam_oracle, tmp_path):
    from conftest import sha256

    before = sha256(nircam_oracle["uncal"])
    jwpipe.run("detector1", str(nircam_oracle["uncal"]), overrides=nircam_oracle["refs"],
               steps=NO_EXTENDED)
    assert sha256(nircam_oracle["uncal"]) == before


def test_dark_pipeline_writes_corrected_ramp(nircam_oracle, tmp_path):
    refs = {k: v for k, v in nircam_oracle["refs"].items()
            if k not in ("dark", "gain", "readnoise")}
    result = jwpipe.run("dark", str(nircam_oracle["uncal"]), overrides=refs, save_results=True,
                        output_dir=str(tmp_path))
    path = tmp_path / "jw_nrc_sub160_g10_i3_s42_dark.fits"
    assert path.exists() and result.shape == (3, 10, 160, 160)
    with fits.open(path) as hdul:
        assert hdul[0].header["DATAMODL"] == "RampModel"
        assert hdul[0].header["S_LINEAR"] == "COMPLETE"
        assert "S_DARK" not in hdul[0].header and "S_JUMP" not in hdul[0].header


def test_tso1_skips_ipc(nircam_oracle, tmp_path):
    rate = jwpipe.run("tso1", str(nircam_oracle["uncal"]), overrides=nircam_oracle["refs"],
                      steps=NO_EXTENDED)
    assert rate.meta.cal_step.ipc == "SKIPPED" and rate.meta.cal_step.jump == "COMPLETE"
