"""picture_frame: the NIRSpec thermal picture frame, against the simulator's injected glow.

The exposures are NRS1 full frames (NRSRAPID, 5 groups, 2 integrations) with the synthetic glow
(:mod:`jwpipe.simulate.picture_frame`: a frame filling the band the step measures, growing as
``1 - exp(-t / 100 s)``) and the same exposure (same seed, same noise) without it: a faint glow
(20 DN asymptotically, 0.14 DN/s in the rates against 0.34 DN/s of noise per pixel), the regime
the reference's method is made for, and a bright one (300 DN, 2.2 DN/s). The PICTUREFRAME
reference holds the glow's exact shape.

Agreement with the reference pipeline (jwst 3.0 ``correct_picture_frame``, checked side by side
outside the test suite, which cannot import jwst): on a rate image the output is bit-identical;
on a ramp, given the same draft rate, the background mask is identical and the corrected ramp
agrees to 0.004 DN (float32 rounding).
"""

from __future__ import annotations

import numpy as np
import pytest

import jwpipe
from jwpipe import datamodels
from jwpipe.errors import ConfigError, ReferenceFileError
from jwpipe.simulate import make_crds_cache, simulate_exposure
from jwpipe.simulate.picture_frame import frame_shape
from jwpipe.steps.picture_frame import (
    CENTER_REGION,
    PictureFrameStep,
    correct_ramp,
    frame_regions,
    region_masks,
)

pytestmark = pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning")

FAINT, BRIGHT = 20.0, 300.0
SHAPE = dict(detector="NRS1", subarray="FULL", ngroups=5, nints=2, seed=3)
ON = {"picture_frame": {"skip": False, "mask_science_regions": False}}
#: Where the glow is strong (over half its border value), and a central patch far from it.
EDGE = frame_shape() > 0.5
CENTER = np.zeros(EDGE.shape, bool)
CENTER[512:1536, 512:1536] = True


@pytest.fixture(scope="module")
def nrs(tmp_path_factory):
    root = tmp_path_factory.mktemp("picture_frame")
    cache = make_crds_cache(root / "crds", detectors=["NRS1"], subarrays=["FULL"], seed=0,
                            dark_frames=SHAPE["ngroups"])
    paths = {name: simulate_exposure(crds_path=cache, output_dir=root / name, picture_frame=glow,
                                     **SHAPE).uncal_path
             for name, glow in (("clean", None), ("faint", FAINT), ("bright", BRIGHT))}
    return dict(paths, root=root, cache=cache,
                reference=next((cache / "references").rglob("*_pictureframe_*.fits")))


@pytest.fixture(scope="module")
def runs(nrs):
    """rateints of: the clean exposure; the faint glow uncorrected, corrected at the defaults in
    one block of both integrations (its ramp, mask and correction saved) and one integration per
    block; the bright glow uncorrected and corrected without clipping (n_sigma=0)."""
    out = {}

    def rateints(name, exposure, **kw):
        folder = nrs["root"] / ("run_" + name)
        jwpipe.run("detector1", nrs[exposure], crds_path=nrs["cache"], output_dir=folder,
                   save_results=True, **kw)
        out[name] = np.array(datamodels.open(next(folder.glob("*_rateints.fits"))).data)
        out[name + "_dir"] = folder

    rateints("clean", "clean")
    rateints("faint", "faint", save_calibrated_ramp=True)
    rateints("faint_corrected", "faint", save_calibrated_ramp=True, integrations_per_block=2,
             steps={"picture_frame": dict(ON["picture_frame"], save_mask=True,
                                          save_correction=True)})
    rateints("faint_streamed", "faint", integrations_per_block=1, steps=ON)
    rateints("bright", "bright")
    rateints("bright_unclipped", "bright",
             steps={"picture_frame": dict(ON["picture_frame"], n_sigma=0.0)})
    return out


def _glow_left(rates, clean) -> np.ndarray:
    """Per integration: median rate excess over the clean exposure where the glow is strong,
    less the same at the centre (the correction also removes the dark background level, which
    is the same everywhere), DN/s."""
    excess = rates - clean
    return np.array([np.nanmedian(e[EDGE]) - np.nanmedian(e[CENTER]) for e in excess])


def test_region_masks_are_the_documented_bands():
    center, edge = region_masks(np.ones((2048, 2048), bool))
    width = CENTER_REGION[1] - CENTER_REGION[0]
    assert center.sum() == width ** 2 == 1908 ** 2
    # Edge: rows/columns 4..2042 less the block 75..1984 inside the bands.
    assert edge.sum() == 2039 ** 2 - 1910 ** 2
    assert not edge[:4].any() and not edge[:, 2043:].any() and not (center & edge).any()
    hole = np.ones((2048, 2048), bool)
    hole[1000, 1000] = hole[10, 500] = False
    c2, e2 = region_masks(hole)
    assert c2.sum() == center.sum() - 1 and e2.sum() == edge.sum() - 1


def test_noiseless_glow_and_background_are_removed_exactly():
    """A ramp of background + scaled glow + a source: the step leaves group differences equal to
    the source alone (the reference's estimator is exact without noise)."""
    shape = frame_shape()
    background = np.ones(shape.shape, bool)
    background[900:1100, 900:1100] = False                      # the source, masked
    regions = frame_regions(shape * 0.05, background)
    ngroups = 4
    growth = np.array([0.0, 7.0, 16.0, 19.0])                   # glow, DN (not linear in time)
    dark = np.array([0.0, 3.0, 6.0, 9.0])                       # uniform background, DN
    source = np.zeros(shape.shape, np.float32)
    source[950:1050, 950:1050] = 40.0
    ramp = np.stack([1000.0 + dark[g] + growth[g] * shape + g * source
                     for g in range(ngroups)]).astype(np.float32)
    noisy = ramp + np.random.default_rng(1).normal(0.0, 5.0, ramp.shape).astype(np.float32)
    scales, offsets = correct_ramp(ramp, regions)
    # The reference image is the glow x 0.05, so its scale is growth / 0.05.
    np.testing.assert_allclose(scales, growth[1:] / 0.05, rtol=1e-5)
    for g in range(1, ngroups):
        np.testing.assert_allclose(ramp[g] - ramp[0], g * source, atol=2e-3)
    # Groups corrected in parallel threads give the same result as one after the other.
    serial, threaded = noisy.copy(), noisy.copy()
    np.testing.assert_array_equal(correct_ramp(serial, regions, threads=1),
                                  correct_ramp(threaded, regions, threads=3))
    np.testing.assert_array_equal(serial, threaded)


def test_glow_is_removed_without_bias_when_nothing_is_clipped(runs):
    """With n_sigma=0 the background mask is every pixel with data, and the bright glow's rate
    excess (2.2 DN/s at the edges) is removed to under 2%: 0.5-0.7% is left (measured). The
    floor is the noise of the per-group medians over the ~0.5 million edge pixels, about
    0.005 DN/s in the rates (0.25% here, as the faint exposure's scatter shows)."""
    injected = _glow_left(runs["bright"], runs["clean"])
    left = _glow_left(runs["bright_unclipped"], runs["clean"])
    print("bright glow (DN/s) uncorrected", injected, "corrected", left)
    assert np.all(injected > 2.0)
    assert np.all(np.abs(left) < 0.02 * injected)
    # Away from the edges the correction is a uniform level: the rates keep their noise.
    spread = np.nanstd((runs["bright_unclipped"] - runs["clean"])[:, CENTER], axis=1)
    assert np.all(spread < 0.005)


def test_faint_glow_is_removed_at_the_defaults(runs):
    """At the defaults (draft-rate mask clipped at 2 sigma) the faint glow (0.14 DN/s) is
    removed to within 15%: 6-11% is left (measured), an under-correction of the reference's
    method: the glow raises the edge pixels' draft rates, so the clip drops more of their upper
    noise tail there than at the centre, and the edge pixels kept have lower group
    differences. (A glow brighter than the clip threshold is mostly masked as signal and left
    about half uncorrected; n_sigma=0 avoids that, see above.)"""
    injected = _glow_left(runs["faint"], runs["clean"])
    left = _glow_left(runs["faint_corrected"], runs["clean"])
    print("faint glow (DN/s) uncorrected", injected, "corrected", left)
    assert np.all(injected > 0.1)
    assert np.all(np.abs(left) < 0.15 * injected)


def test_streamed_blocks_correct_each_integration(runs):
    """One integration per block: each block's mask comes from its own (noisier) draft rate
    instead of the mean of both integrations, which changes the rates a little (see the print)
    and the glow removed not at all beyond the tolerance above."""
    left = _glow_left(runs["faint_streamed"], runs["clean"])
    assert np.all(np.abs(left) < 0.15 * _glow_left(runs["faint"], runs["clean"]))
    difference = runs["faint_streamed"] - runs["faint_corrected"]
    print("streamed - one block: rms", np.nanstd(difference), "max", np.nanmax(np.abs(difference)))
    assert np.nanstd(difference) < 0.005


def test_step_alone_matches_the_pipeline_and_its_saved_products(runs, nrs):
    """The step run alone on the uncorrected ramp gives the pipeline's ramp; the saved
    correction is exactly what it changed, the saved mask a 0/1 image."""
    before = datamodels.open(next(runs["faint_dir"].glob("*_ramp.fits")))
    after = datamodels.open(next(runs["faint_corrected_dir"].glob("*_ramp.fits")))
    alone = PictureFrameStep(skip=False, mask_science_regions=False,
                             crds_path=nrs["cache"]).run(before)
    assert alone.meta.cal_step.picture_frame == "COMPLETE"
    np.testing.assert_array_equal(alone.data, after.data)
    correction = datamodels.open(next(runs["faint_corrected_dir"].glob("*_pctfrm_correction.fits")))
    np.testing.assert_allclose(correction.data, np.asarray(after.data) - np.asarray(before.data),
                               atol=0.01)     # float32 rounding of values ~1e4 DN
    assert not np.asarray(correction.data)[:, 0].any()
    mask = datamodels.open(next(runs["faint_corrected_dir"].glob("*_pctfrm_mask.fits")))
    values = np.asarray(mask.data)
    assert set(np.unique(values)) == {0.0, 1.0} and values.mean() > 0.8
    sdm = pytest.importorskip("stdatamodels.jwst.datamodels")
    with sdm.open(mask.path) as m:
        assert type(m).__name__ == "ImageModel"
    with sdm.open(correction.path) as m:
        assert type(m).__name__ == "RampModel"


def test_rate_images_are_corrected_directly(runs, nrs):
    """On a rateints cube (and a rate image) each image is scaled and corrected by itself."""
    step = PictureFrameStep(skip=False, mask_science_regions=False, crds_path=nrs["cache"])
    cube = step.run(next(runs["faint_dir"].glob("*_rateints.fits")))
    assert cube.meta.cal_step.picture_frame == "COMPLETE"
    left = _glow_left(np.asarray(cube.data), runs["clean"])
    assert np.all(np.abs(left) < 0.15 * _glow_left(runs["faint"], runs["clean"]))
    image = step.run(next(runs["faint_dir"].glob("*_rate.fits")))
    assert type(image).__name__ == "ImageModel" and image.data.ndim == 2
    with np.errstate(invalid="ignore"):
        mean_clean = np.mean(runs["clean"], axis=0)[None]
    assert abs(_glow_left(np.asarray(image.data)[None], mean_clean)[0]) < 0.15 * 0.14


def test_skips_and_errors_are_named(nrs, tmp_path, sim_cache):
    ramp = PictureFrameStep(skip=False, mask_science_regions=False, crds_path=nrs["cache"])
    # Its default masks the slits through the WCS, which jwpipe lacks: said before any data.
    with pytest.raises(ConfigError, match="mask_science_regions"):
        jwpipe.run("detector1", nrs["faint"], crds_path=nrs["cache"],
                   steps={"picture_frame": {"skip": False}}, output_dir=tmp_path)
    # A reference of the wrong size.
    bad = tmp_path / "bad_pictureframe.fits"
    ref = datamodels.open(nrs["reference"])
    ref.data = np.zeros((100, 100), np.float32)
    ref.save(bad)
    step = PictureFrameStep(skip=False, mask_science_regions=False, crds_path=nrs["cache"],
                            overrides={"pictureframe": str(bad)})
    with pytest.raises(ReferenceFileError, match="bad_pictureframe.fits: extension SCI"):
        step.run(nrs["faint"])
    # Not NIRSpec: skipped (no PICTUREFRAME applies to NIRCam).
    nircam = simulate_exposure(detector="NRCA1", subarray="SUB160", ngroups=3, nints=1,
                               crds_path=sim_cache, output_dir=tmp_path / "nrc", seed=1)
    result = PictureFrameStep(skip=False, crds_path=sim_cache).run(nircam.uncal_path)
    assert result.meta.cal_step.picture_frame == "SKIPPED"
    # One group: nothing to correct.
    one = datamodels.open(nrs["faint"])
    model = ramp.open_input(one)
    model.data = np.asarray(model.data)[:, :1]
    model.groupdq = np.asarray(model.groupdq)[:, :1]
    model.meta.exposure.ngroups = 1
    assert ramp.run(model).meta.cal_step.picture_frame == "SKIPPED"
