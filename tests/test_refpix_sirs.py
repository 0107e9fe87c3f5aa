"""refpix with refpix_algorithm='sirs': kernel convention, truth, fallbacks, bad references.

Parity with the reference pipeline (jwst 3.0.0 ``optimized_convolution``) was checked outside
the tests, on a 2048 x 2048 group with hot reference pixels and two kernel settings: kernels
identical, corrected images equal to 1e-13 in double precision and identical in float32 (closing
note of issue 4). These tests check the algorithm against injected truth instead.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from test_step_refpix import ORIENTATIONS, make_model

from jwpipe.errors import ConfigError, ReferenceFileError
from jwpipe.simulate.sirs import lagged_coefficients, write_sirskernel_reference
from jwpipe.steps._sirs import sirs_kernels, sirs_row_templates
from jwpipe.steps.refpix import RefPixStep, detector_view

N = 2048
#: Per amplifier, the left and right kernels as {lag: weight}: different lags and weights per
#: amplifier and side, so a swapped amplifier, side or lag direction shows.
LEFT_TAPS = [{0: 0.5}, {2: 0.3}, {-1: 0.6}, {3: 0.25, 0: 0.25}]
RIGHT_TAPS = [{0: 0.5}, {-2: 0.7}, {1: 0.4}, {1: 0.5}]
MAX_LAG = 3
DELTA = 1e-3    # gaussmooth this small makes the Gaussian window a single tap (exp(-5e5) = 0)


def coefficients(taps_per_amp):
    return np.stack([lagged_coefficients(taps) for taps in taps_per_amp])


@pytest.fixture(scope="module")
def kernel_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sirs") / "jwst_nircam_sirskernel_0001.asdf"
    gamma, zeta = coefficients(LEFT_TAPS), coefficients(RIGHT_TAPS)
    return write_sirskernel_reference(path, {"nrca1": (gamma, zeta), "nrs1": (gamma, zeta)})


def run(model, sirskernel, **params):
    return RefPixStep(overrides={"refpix": "N/A", "sirskernel": str(sirskernel)},
                      refpix_algorithm="sirs", **params).run(model)


def shifted(signal, lag):
    """signal[y - lag], zero outside the detector."""
    out = np.zeros_like(signal)
    if lag >= 0:
        out[..., lag:] = signal[..., :signal.shape[-1] - lag]
    else:
        out[..., :lag] = signal[..., -lag:]
    return out


# -- kernels -------------------------------------------------------------------------------------

@pytest.mark.parametrize("lag", [-4, 0, 3])
def test_kernel_taps_follow_the_reference_convention(lag):
    """Tap ``halfwidth + lag`` of the kernel built from the coefficients of a single lag holds
    the weight, smoothed by the normalised Gaussian of width ``gaussmooth``."""
    gamma = np.stack([lagged_coefficients({lag: 2.0})] * 4)
    zeta = np.stack([lagged_coefficients({0: 1.0})] * 4)
    sharp = sirs_kernels(gamma, zeta, gaussmooth=DELTA, halfwidth=10)
    expected = np.zeros(21)
    expected[10 + lag] = 2.0
    np.testing.assert_allclose(sharp.left, np.tile(expected, (4, 1)), atol=1e-12)
    smooth = sirs_kernels(gamma, zeta, gaussmooth=1.0, halfwidth=10)
    x = np.arange(-10, 11)
    window = np.exp(-x ** 2 / 2.0) / np.exp(-x ** 2 / 2.0).sum()
    np.testing.assert_allclose(smooth.left[0], 2.0 * shifted(window, lag), atol=1e-12)
    assert smooth.right.shape == (4, 21)


def test_templates_reject_outliers_and_keep_the_weight_of_the_rest():
    """A hot reference pixel is dropped; the row's other pixels carry its weight, so a row
    signal seen by every reference pixel is still recovered exactly."""
    rng = np.random.default_rng(0)
    nrows = 300
    signal = np.cumsum(rng.normal(0, 1, (2, nrows)), axis=1)
    left = np.repeat(signal[:, :, None], 4, axis=2)
    right = left.copy()
    left[0, 100, 2] = 1e4
    right[1, 17, :3] = -1e4
    right[1, 40, :] = np.nan
    kernels = sirs_kernels(coefficients([{0: 0.5}] * 4), coefficients([{0: 0.5}] * 4),
                           gaussmooth=DELTA, halfwidth=5)
    templates = sirs_row_templates(left, right, kernels, sigreject=4.0)
    assert templates.shape == (2, 4, nrows)
    # Row 40 of image 1 has no good right pixel: only the left side's half is left there.
    want = np.repeat(signal[:, None, :], 4, axis=1)
    want[1, :, 40] *= 0.5
    np.testing.assert_allclose(templates, want, rtol=0, atol=1e-9)
    # A side without any finite pixel adds nothing (and no warning): the other side's half.
    left[:] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        templates = sirs_row_templates(left, right, kernels, sigreject=4.0)
    want = 0.5 * np.repeat(signal[:, None, :], 4, axis=1)
    want[1, :, 40] = 0.0
    np.testing.assert_allclose(templates, want, rtol=0, atol=1e-9)


# -- the step, against truth ---------------------------------------------------------------------

@pytest.mark.parametrize("detector", ["NRCA1", "NRS1"])
def test_sirs_removes_a_lagged_row_signal_exactly(kernel_file, detector):
    """Full frame built in the detector frame: a scene, per-amplifier offsets (the top/bottom
    rows remove them) and a row signal that the reference columns see directly and each
    amplifier sees through its own kernels. With single-tap kernels SIRS predicts it exactly,
    hot reference pixels notwithstanding; the running median cannot."""
    fast, slow, _ = ORIENTATIONS[detector]
    rng = np.random.default_rng(1)
    ngroups = 2
    truth = np.zeros((1, ngroups, N, N), np.float32)
    truth[..., 4:-4, 4:-4] = rng.uniform(0, 200, (N - 8, N - 8)).astype(np.float32)
    data = truth.copy()
    det = detector_view(data, fast, slow)
    y = np.arange(N)
    signal = np.stack([30 * np.sin(2 * np.pi * y / 97 + g) + 10 * np.sin(2 * np.pi * y / 13)
                       for g in range(ngroups)])
    det[0, :, :, :4] += signal[:, :, None]
    det[0, :, :, -4:] += signal[:, :, None]
    for amp in range(4):
        seen = sum(w * shifted(signal, lag) for lag, w in LEFT_TAPS[amp].items())
        seen = seen + sum(w * shifted(signal, lag) for lag, w in RIGHT_TAPS[amp].items())
        science = slice(max(4, amp * 512), min(N - 4, (amp + 1) * 512))
        det[0, :, 4:-4, science] += seen[:, 4:-4, None].astype(np.float32)
        det[0, :, :, amp * 512:(amp + 1) * 512] += np.float32(25 * (amp + 1))   # offsets
    det[0, :, 700:705, 1] += 8000.0                    # hot left reference pixels
    det[0, 1, 1500, 2046] -= 6000.0
    model = make_model(data, detector)
    result = run(model, kernel_file, gaussmooth=DELTA)
    assert result.meta.cal_step.refpix == "COMPLETE"
    assert result.meta.ref_file.sirskernel.name.endswith("sirskernel_0001.asdf")
    got = detector_view(result.data - truth, fast, slow)[0, :, :, 4:-4]
    rows = np.arange(N)
    near_hot = (np.abs(rows[:, None] - np.array([700, 701, 702, 703, 704, 1500])) <= MAX_LAG
                ).any(axis=1)
    exact = (rows >= 4 + MAX_LAG) & (rows < N - 4 - MAX_LAG) & ~near_hot
    # float32 rounding of values up to ~300 DN
    np.testing.assert_allclose(got[:, exact], 0.0, atol=2e-4)
    # Near a rejected pixel the norm restores the row's weight as a whole, not tap by tap (as
    # in the reference pipeline): exact for single-tap kernels, within 2% of the signal's
    # amplitude (40 DN) for amplifier 4's two taps.
    assert np.abs(got[:, near_hot]).max() < 0.8
    median = detector_view(RefPixStep(overrides={"refpix": "N/A", "sirskernel": "N/A"}).run(
        model).data - truth, fast, slow)[0, :, 4:-4, 4:-4]
    assert np.abs(median).max() > 5.0      # the lags and the 13-row period defeat it


def test_sirs_with_the_default_smoothing_is_close_on_a_smooth_signal(kernel_file):
    """With the default Gaussian (1 row) a signal that varies slowly over rows is still taken
    out, to the smoothing's second-order error (signal'' / 2 ~ 0.03 DN here)."""
    fast, slow, _ = ORIENTATIONS["NRCA1"]
    data = np.zeros((1, 1, N, N), np.float32)
    det = detector_view(data, fast, slow)
    signal = 20 * np.sin(2 * np.pi * np.arange(N) / 150)
    det[0, 0] += signal[:, None].astype(np.float32)       # every pixel, lag 0
    gamma = coefficients([{0: 0.5}] * 4)
    path = write_sirskernel_reference(kernel_file.parent / "lag0.asdf", {"nrca1": (gamma, gamma)})
    result = run(make_model(data, "NRCA1"), path)
    resid = detector_view(result.data, fast, slow)[0, 0, 40:-40, 4:-4]
    bound = 20 * (2 * np.pi / 150) ** 2 / 2 * 1.1
    assert np.abs(resid).max() < bound
    assert np.abs(resid).max() > 0.1 * bound               # the smoothing does act


def test_simulated_cache_kernels_take_out_the_simulators_row_noise(sim_cache):
    """The simulated CRDS cache holds a SIRSKERNEL per near-IR detector (lag 0, half per side:
    the simulator's 1/f noise is one offset per detector row). Found through the cache, without
    an override, it removes such a row offset exactly where the running median (11 rows) cannot
    follow it (rows changing faster than its window)."""
    fast, slow, _ = ORIENTATIONS["NRCA1"]
    rng = np.random.default_rng(3)
    truth = np.zeros((1, 2, N, N), np.float32)
    truth[..., 4:-4, 4:-4] = rng.uniform(0, 100, (N - 8, N - 8)).astype(np.float32)
    data = truth.copy()
    rows = rng.normal(0, 5.0, (2, N)).astype(np.float32)       # white row offsets
    detector_view(data, fast, slow)[0] += rows[:, :, None]
    model = make_model(data, "NRCA1")
    model.meta.exposure.type = "NRC_IMAGE"
    model.meta.instrument.channel, model.meta.instrument.module = "SHORT", "A"
    model.meta.observation.date, model.meta.observation.time = "2023-03-01", "00:00:00"
    step = RefPixStep(refpix_algorithm="sirs", crds_path=sim_cache, gaussmooth=DELTA)
    result = step.run(model)
    assert result.meta.ref_file.sirskernel.name.startswith("crds://jwst_nircam_sirskernel_")
    resid = detector_view(result.data - truth, fast, slow)[0, :, 4:-4, 4:-4]
    np.testing.assert_allclose(resid, 0.0, atol=2e-4)
    median = RefPixStep(crds_path=sim_cache).run(model)
    left = detector_view(median.data - truth, fast, slow)[0, :, 4:-4, 4:-4]
    assert np.std(left) > 4.0          # the 11-row median removes almost none of white rows


# -- where the running median stays ----------------------------------------------------------------

def test_running_median_stays_without_kernels(kernel_file, tmp_path, caplog):
    """No SIRSKERNEL reference (warning), a detector the reference lacks, or a subarray: the
    side pixels are smoothed by the running median, as with refpix_algorithm='median'."""
    rng = np.random.default_rng(2)
    data = rng.normal(1000, 5, (1, 2, N, N)).astype(np.float32)
    model = make_model(data, "NRCA2")
    median = RefPixStep(overrides={"refpix": "N/A", "sirskernel": "N/A"}).run(model).data
    with caplog.at_level(logging.INFO, logger="jwpipe.refpix"):
        missing = RefPixStep(overrides={"refpix": "N/A", "sirskernel": "N/A"},
                             refpix_algorithm="sirs").run(model)
        other_detector = run(model, kernel_file)
    np.testing.assert_array_equal(missing.data, median)
    np.testing.assert_array_equal(other_detector.data, median)
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert any(level == logging.WARNING and "no SIRSKERNEL reference" in text
               for level, text in messages)
    assert any("has no SIRS kernels for NRCA2" in text for _, text in messages)
    sub = make_model(data[..., :512, :], "NRCA1", subarray="SUB2048X512")
    np.testing.assert_array_equal(
        run(sub, kernel_file).data,
        RefPixStep(overrides={"refpix": "N/A", "sirskernel": "N/A"}).run(sub).data)


# -- bad input -----------------------------------------------------------------------------------

def test_bad_sirs_references_and_parameters_are_clear_errors(kernel_file, tmp_path):
    model = make_model(np.zeros((1, 1, N, N), np.float32), "NRCA1")
    short = write_sirskernel_reference(tmp_path / "short.asdf", {
        "nrca1": (np.ones((4, 8), complex), np.ones((4, 8), complex))})
    with pytest.raises(ReferenceFileError, match="short.asdf.*halfwidth=30"):
        run(model, short)
    three = write_sirskernel_reference(tmp_path / "three.asdf", {
        "nrca1": (np.ones((3, 1025), complex), np.ones((3, 1025), complex))})
    with pytest.raises(ReferenceFileError, match="three.asdf.*'nrca1'.*'gamma'.*shape"):
        run(model, three)
    with pytest.raises(ConfigError, match="gaussmooth"):
        run(model, kernel_file, gaussmooth=0.0)
    with pytest.raises(ConfigError, match="halfwidth"):
        run(model, kernel_file, halfwidth=0)
