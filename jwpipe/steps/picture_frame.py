"""picture_frame (NIRSpec full frame, skipped by default): remove the thermal "picture frame".

A thermal transient makes the edges of NIRSpec full frames glow, by an amount that changes
through the integration. The PICTUREFRAME reference holds the glow's shape (a full-frame rate
image). Following the reference pipeline:

1. A draft rate and from it a background mask: finite, non-zero pixels within
   [median - 3 sigma, median + ``n_sigma`` sigma] of the 3-sigma clipped statistics of all its
   pixels (:func:`~jwpipe.steps.clean_flicker_noise.scene_mask`).
2. Background pixels in the centre (rows and columns 76-1983) and along the edges (rows or
   columns 4-74 and 1985-2042, inside the reference-pixel border) (:func:`region_masks`), and
   the reference image's medians there, ``ref_center`` and ``ref_edge``.
3. Each group's difference from group 1 (each image of a rate or rateints input) has medians
   ``center`` and ``edge`` there; it loses ``scale * (reference - ref_edge) + edge`` with
   ``scale = (center - edge) / (ref_center - ref_edge)`` (:func:`subtract_picture_frame`). The
   edge and the centre are left at 0: the glow goes, and with it the difference's dark
   background level.

The step runs between jump and clean_flicker_noise on ramps, or alone on ``_rate``/``_rateints``
images. Differences from the reference pipeline: the draft rate is the mean usable group
difference, not a ramp fit, and it comes from the integrations of each block the driver streams
(all of them when the step runs on a whole exposure); pixels whose reference value is not finite
lose the offset alone (the reference pipeline makes them NaN). Not implemented (clear
ConfigError): ``mask_science_regions`` (its default), which masks the slits and IFU slices
through the NIRSpec WCS that jwpipe does not have yet; set it to False to mask the scene by
sigma clipping alone.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ReferenceFileError
from ..logs import get_logger
from .base import (
    NOT_APPLICABLE,
    RampBlock,
    RampStep,
    StepParams,
    exposure_shape,
    intermediate_product,
    output_name,
)
from .clean_flicker_noise import draft_rate, scene_mask

__all__ = ["LOWER_EDGE_REGION", "UPPER_EDGE_REGION", "CENTER_REGION", "region_masks",
           "FrameRegions", "frame_regions", "relative_glow", "subtract_picture_frame",
           "correct_ramp", "PictureFrameParams", "PictureFrameStep"]

log = get_logger("picture_frame")

#: Full-frame rows/columns [start, stop) of the statistics regions (0-based), as the reference.
LOWER_EDGE_REGION = (4, 75)
UPPER_EDGE_REGION = (1985, 2043)
CENTER_REGION = (76, 1984)
#: The frame the regions are defined on.
FULL_SHAPE = (2048, 2048)


def region_masks(background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Background pixels in the centre and along the edges of a full frame.

    Parameters
    ----------
    background : ndarray of shape (2048, 2048), bool
        True where a pixel is background.

    Returns
    -------
    center, edge : ndarrays of shape (2048, 2048), bool
        ``center``: background in rows and columns ``CENTER_REGION``. ``edge``: background in
        the bands of ``LOWER_EDGE_REGION``/``UPPER_EDGE_REGION`` rows or columns, outside the
        reference-pixel border (rows and columns below 4 or from 2043 on).
    """
    ny, nx = background.shape
    y = np.arange(ny)[:, None]
    x = np.arange(nx)[None, :]

    def within(v, region):
        return (v >= region[0]) & (v < region[1])

    center = background & within(y, CENTER_REGION) & within(x, CENTER_REGION)
    inside = within(y, (LOWER_EDGE_REGION[0], UPPER_EDGE_REGION[1])) & \
        within(x, (LOWER_EDGE_REGION[0], UPPER_EDGE_REGION[1]))
    band = (within(y, LOWER_EDGE_REGION) | within(y, UPPER_EDGE_REGION)
            | within(x, LOWER_EDGE_REGION) | within(x, UPPER_EDGE_REGION))
    return center, background & band & inside


@dataclass
class FrameRegions:
    """Where the levels of an image are measured, and the reference image measured there.

    Attributes
    ----------
    center, edge : ndarray of int64
        Flat indices of the background pixels of the centre and edge regions.
    glow : ndarray of shape (ny, nx), float32
        ``reference - ref_edge``: the reference relative to its edge level (0 where the
        reference is not finite).
    ref_edge : float
        The reference's median over ``edge``.
    scale_denominator : float
        ``ref_center - ref_edge``.
    """

    center: np.ndarray
    edge: np.ndarray
    glow: np.ndarray
    ref_edge: float
    scale_denominator: float


def frame_regions(reference: np.ndarray, background: np.ndarray) -> FrameRegions | None:
    """The regions of a background mask and the reference's levels there.

    Parameters
    ----------
    reference : ndarray of shape (2048, 2048), float32
        The PICTUREFRAME image.
    background : ndarray of shape (2048, 2048), bool

    Returns
    -------
    FrameRegions, or None when the centre or the edge has no background pixel, or the
    reference has the same median in both (nothing to scale).
    """
    center, edge = region_masks(background)
    if not center.any() or not edge.any():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)       # all-NaN regions -> NaN
        ref_center = np.nanmedian(reference[center])
        ref_edge = np.nanmedian(reference[edge])
    denominator = float(ref_center - ref_edge)
    if not np.isfinite(denominator) or denominator == 0.0:
        return None
    return FrameRegions(np.flatnonzero(center), np.flatnonzero(edge),
                        relative_glow(reference, ref_edge), float(ref_edge), denominator)


def relative_glow(reference: np.ndarray, ref_edge: float) -> np.ndarray:
    """``reference - ref_edge`` as float32, 0 where the reference is not finite."""
    glow = np.subtract(reference, np.float32(ref_edge), dtype=np.float32)
    glow[~np.isfinite(glow)] = 0.0
    return glow


def _median(image: np.ndarray, index: np.ndarray) -> float:
    values = np.take(image.reshape(-1), index)
    finite = np.isfinite(values)
    if not finite.all():
        values = values[finite]
    return float(np.median(values)) if values.size else np.nan


def subtract_picture_frame(image: np.ndarray, regions: FrameRegions,
                           work: np.ndarray | None = None) -> tuple[float, float]:
    """Scale the glow to one image's centre and edge levels and subtract it, in place.

    Parameters
    ----------
    image : ndarray of shape (ny, nx), float32
        A group difference (group - group 1) or a rate image; corrected in place.
    regions : FrameRegions
    work : ndarray of shape (ny, nx), float32, optional
        Scratch space.

    Returns
    -------
    scale, offset : float
        The correction was ``scale * regions.glow + offset``; NaN (and the image unchanged)
        when a region has no finite value.
    """
    center = _median(image, regions.center)
    edge = _median(image, regions.edge)
    if not (np.isfinite(center) and np.isfinite(edge)):
        return np.nan, np.nan
    scale = (center - edge) / regions.scale_denominator
    if work is None:
        work = np.empty_like(image)
    np.multiply(regions.glow, np.float32(scale), out=work)
    work += np.float32(edge)
    image -= work
    return scale, edge


def correct_ramp(ramp: np.ndarray, regions: FrameRegions,
                 threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Remove the picture frame from one integration's ramp, in place.

    Parameters
    ----------
    ramp : ndarray of shape (ngroups, ny, nx), float32
        Group 1 is left alone; each later group's difference from it is corrected.
    regions : FrameRegions
    threads : int
        Groups corrected at once (numpy's medians release the GIL); the result does not depend
        on it.

    Returns
    -------
    scales, offsets : ndarrays of shape (ngroups - 1,), float64
        Per later group (see :func:`subtract_picture_frame`).
    """
    ngroups = ramp.shape[0]
    scales = np.full(ngroups - 1, np.nan)
    offsets = np.full(ngroups - 1, np.nan)
    workers = max(1, min(int(threads), ngroups - 1))

    def correct_groups(first: int) -> None:
        difference = np.empty(ramp.shape[1:], np.float32)
        work = np.empty_like(difference)
        for g in range(1 + first, ngroups, workers):
            np.subtract(ramp[g], ramp[0], out=difference)
            scale, offset = subtract_picture_frame(difference, regions, work)
            if np.isfinite(scale):
                np.add(difference, ramp[0], out=ramp[g])
                scales[g - 1], offsets[g - 1] = scale, offset

    if workers == 1:
        correct_groups(0)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(correct_groups, range(workers)))
    return scales, offsets


# -- the step --------------------------------------------------------------------------------------

@dataclass
class PictureFrameParams(StepParams):
    skip: bool = True
    #: Mask the slits and IFU slices through the WCS (not implemented: ConfigError for NIRSpec).
    mask_science_regions: bool = True
    #: Clipping level (sigma above the background) for non-background signal; 0: no clipping.
    n_sigma: float = 2.0
    #: Write the background mask (``_pctfrm_mask``).
    save_mask: bool = False
    #: Write what was added to the data (``_pctfrm_correction``).
    save_correction: bool = False


@dataclass
class FramePlan:
    status: str = "SKIPPED"
    reason: str = ""
    reference: np.ndarray | None = None
    mask: np.ndarray | None = None       # AND of the blocks' background masks (save_mask)
    # save_correction: integration -> (scales, offsets, the reference's edge level).
    fits: dict = field(default_factory=dict)
    corrected: int = 0


class PictureFrameStep(RampStep):
    """Scale the PICTUREFRAME image to each group and subtract it (NIRSpec full frame)."""

    name = "picture_frame"
    class_name = "PictureFrameStep"
    cal_step = "picture_frame"
    reference_types = ("pictureframe",)
    Params = PictureFrameParams
    model_class = None          # ramps, or rate / rateints images

    def get_references(self, model) -> dict[str, str]:
        self._check_options(model.meta)     # before any data are read
        return super().get_references(model)

    def _check_options(self, meta) -> None:
        exp_type = str(meta.get("exposure.type") or "").upper()
        if self.params.mask_science_regions and exp_type.startswith("NRS"):
            raise ConfigError(
                "step picture_frame: mask_science_regions=True (the default) masks the NIRSpec "
                "slits and IFU slices through the WCS, which jwpipe does not have yet; set "
                "--steps.picture_frame.mask_science_regions=false to mask the scene by sigma "
                "clipping alone")
        if self.params.n_sigma < 0:
            raise ConfigError(f"step picture_frame: n_sigma must be >= 0, got "
                              f"{self.params.n_sigma}")

    def open_input(self, init):
        from .. import datamodels

        model = init if isinstance(init, datamodels.DataModel) else datamodels.open(init)
        if isinstance(model, datamodels.Level1bModel):
            from ..pipelines.ramp_io import ramp_from_level1b

            model = ramp_from_level1b(model)
        return model

    # -- ramps ---------------------------------------------------------------------------------
    def prepare(self, model, refs) -> FramePlan:
        plan = FramePlan()
        meta = model.meta
        instrument = str(meta.get("instrument.name") or "").upper()
        subarray = str(meta.get("subarray.name") or "").upper()
        if model.data is None or model.data.ndim == 4:     # a ramp (streamed: no data yet)
            _, ngroups, *frame = exposure_shape(model)
        else:                                               # rate or rateints images
            ngroups, frame = None, list(model.data.shape[-2:])
        if instrument != "NIRSPEC" or subarray != "FULL":
            plan.reason = (f"it applies to NIRSpec full frames only (this is {instrument or '?'} "
                           f"{subarray or '?'})")
            return plan
        if ngroups is not None and ngroups < 2:
            plan.reason = "a one-group ramp has no group differences to correct"
            return plan
        path = refs.get("pictureframe", NOT_APPLICABLE)
        if path == NOT_APPLICABLE:
            plan.reason = "no PICTUREFRAME reference applies"
            return plan
        plan.reference = self._read_reference(path)
        if tuple(frame) != plan.reference.shape:
            plan.reason = (f"frames of {frame[0]} x {frame[1]} pixels do not match the "
                           f"{plan.reference.shape[0]} x {plan.reference.shape[1]} reference "
                           "(an IRS2 ramp whose interleaved reference pixels refpix has not "
                           "removed?)")
            plan.reference = None
            return plan
        plan.status = "COMPLETE"
        log.info("picture_frame: reference %s", Path(path).name)
        return plan

    @staticmethod
    def _read_reference(path) -> np.ndarray:
        from ..references import open_reference

        ref = open_reference(path, "pictureframe")
        try:
            data = np.array(ref.data, dtype=np.float32)
        finally:
            ref.close()
        if data.shape != FULL_SHAPE:
            raise ReferenceFileError(f"{path}: extension SCI has shape {data.shape}; a "
                                     f"PICTUREFRAME image is {FULL_SHAPE[0]} x {FULL_SHAPE[1]}")
        if not np.isfinite(data).any():
            raise ReferenceFileError(f"{path}: extension SCI has no finite value")
        return data

    def process_block(self, block: RampBlock, plan: FramePlan) -> None:
        if plan.status == "SKIPPED":
            return
        data, gdq = block.data, block.groupdq
        nb = data.shape[0]
        rates = [draft_rate(data[k], gdq[k]) for k in range(nb)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN pixels stay NaN
            rate = np.nanmean(np.stack(rates), axis=0) if nb > 1 else rates[0]
        regions = self._regions(scene_mask(rate, self.params.n_sigma, sample=None), plan)
        if regions is None:
            return
        for k in range(nb):
            scales, offsets = correct_ramp(data[k], regions, self.threads)
            self._record(plan, block.int_start + k, scales, offsets, regions)

    def _regions(self, background: np.ndarray, plan: FramePlan) -> FrameRegions | None:
        """The statistics regions of a background mask (kept for ``save_mask``)."""
        if self.params.save_mask:
            plan.mask = background if plan.mask is None else plan.mask & background
        regions = frame_regions(plan.reference, background)
        if regions is None:
            log.error("picture_frame: no background pixels in the centre or along the edges "
                      "(or the reference is flat there); these images are not corrected")
        return regions

    def _record(self, plan, integration, scales, offsets, regions) -> None:
        done = np.isfinite(scales)
        plan.corrected += int(done.sum())
        log.debug("picture_frame: integration %d scales %s offsets %s", integration + 1,
                  np.round(scales, 4), np.round(offsets, 3))
        if self.params.save_correction:
            plan.fits[integration] = (scales, offsets, regions.ref_edge)

    def release(self, plan: FramePlan) -> FramePlan:
        if not self.params.save_correction:
            plan.reference = None
        return plan

    def finish(self, model, plan: FramePlan) -> None:
        if plan.status == "COMPLETE" and plan.corrected == 0:
            plan.status = "SKIPPED"
            plan.reason = "no image could be scaled"
        if plan.reason:
            log.warning("picture_frame skipped: %s", plan.reason)
        else:
            log.info("picture_frame: corrected %d images", plan.corrected)
        self.record_status(model, plan.status)
        if plan.status != "COMPLETE":
            return
        if self.params.save_mask and plan.mask is not None:
            self._save_mask(model, plan.mask)
        if self.params.save_correction:
            self._save_correction(model, plan)

    # -- rate or rateints images ---------------------------------------------------------------
    def process(self, model, refs):
        if model.data is not None and model.data.ndim == 4:
            return super().process(model, refs)
        plan = self.prepare(model, refs)
        if plan.status == "COMPLETE":
            images = np.array(model.data, dtype=np.float32, copy=True)
            cube = images if images.ndim == 3 else images[None]
            masks = [scene_mask(image, self.params.n_sigma, sample=None) for image in cube]
            regions = self._regions(np.logical_and.reduce(masks), plan)
            if regions is not None:
                work = np.empty(cube.shape[1:], np.float32)
                for k, image in enumerate(cube):
                    scale, offset = subtract_picture_frame(image, regions, work)
                    self._record(plan, k, np.array([scale]), np.array([offset]), regions)
                model.data = images
        self.finish(model, plan)
        return model

    # -- products ------------------------------------------------------------------------------
    def _product_path(self, model, suffix: str) -> Path:
        source = model.path or Path(f"{model.meta.get('filename') or 'jwpipe_exposure.fits'}")
        return output_name(source, suffix, self.params.output_dir or ".")

    def _save_mask(self, model, mask: np.ndarray) -> None:
        path = intermediate_product(model, mask).save(self._product_path(model, "pctfrm_mask"))
        log.info("picture_frame: wrote background mask %s", path)

    def _save_correction(self, model, plan: FramePlan) -> None:
        """What the step added: 0 for group 1, minus the scaled glow for later groups."""
        from ..datamodels.spill import allocate

        if model.data is None or model.data.ndim == 4:
            cube = allocate(exposure_shape(model), np.float32, fill=0.0,
                            spill_dir=self.params.output_dir)
            first = 1
        else:
            cube = np.zeros(model.data.shape, np.float32)
            first = 0
        images = cube if cube.ndim == 4 else cube.reshape((-1, 1) + cube.shape[-2:])
        for integration, (scales, offsets, ref_edge) in plan.fits.items():
            glow = relative_glow(plan.reference, ref_edge)
            for g, (scale, offset) in enumerate(zip(scales, offsets, strict=True)):
                if np.isfinite(scale):
                    target = images[integration, first + g]
                    np.multiply(glow, np.float32(-scale), out=target)
                    target -= np.float32(offset)
        path = intermediate_product(model, cube).save(
            self._product_path(model, "pctfrm_correction"))
        log.info("picture_frame: wrote correction %s", path)
