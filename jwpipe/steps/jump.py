"""jump: flag cosmic rays (jumps) in ramps by two-point differences, plus snowballs and showers.

The detection itself is :func:`jwpipe.jump_detection.detect_jumps` (compiled kernels for the
difference test and for labelling extended events); this module reads the gain and read-noise
references once per exposure and passes the cross-integration state from block to block.

Deviation from the reference pipeline (jwst 3.0 / stcal ``twopoint_difference``), on purpose and
documented in :mod:`jwpipe.jump_detection`: the default ``method="gls_positive"`` tests each
difference with the generalised-least-squares step statistic ``z`` (read-noise covariance of
adjacent differences included), one-sided for positive steps (cosmic rays add charge) at the
threshold of the same false-positive rate as the two-sided test at ``rejection_threshold``, also
for hits that arrive between the frames of a group (``split_hits``, NFRAMES > 1), after removing
for the test only the common-mode (1/f) offset of each detector line (``common_mode``; lines and
amplifiers from FASTAXIS and NOUTPUTS). ``method="gls"`` with ``common_mode=False`` is the
symmetric ``|z|`` test this step used before. Measured on the simulated NIRCam SUB320 exposures
(10 groups): 4-6 sigma hits found 78% (RAPID; 75% before) and 87% (BRIGHT2; 71%), spurious flags
7.0e-5 and 4.9e-5 per clean pixel-group (1.5e-4 and 1.9e-4 before, the 1/f noise). The read noise
of the test includes what the IPC deconvolution adds to it (see :class:`JumpStep`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, fields

import numpy as np

from ..jump_detection import JumpState, detect_jumps, flag_showers
from .base import BlockBuffers, RampBlock, RampStep, StepParams

__all__ = ["JumpStep"]


@dataclass
class JumpParams(StepParams):
    rejection_threshold: float = 4.0
    three_group_rejection_threshold: float = 6.0
    four_group_rejection_threshold: float = 5.0
    maximum_cores: str = "1"
    flag_4_neighbors: bool = True
    max_jump_to_flag_neighbors: float = 1000.0
    min_jump_to_flag_neighbors: float = 10.0
    after_jump_flag_dn1: float = 0.0
    after_jump_flag_time1: float = 0.0
    after_jump_flag_dn2: float = 0.0
    after_jump_flag_time2: float = 0.0
    minimum_groups: int = 3
    min_diffs_single_pass: int = 10
    # Test (see jwpipe.jump_detection.detect_jumps): "gls_positive" (one-sided for positive
    # steps, split hits, common-mode removal) or "gls" (symmetric |z| test).
    method: str = "gls_positive"
    negative_rejection_threshold: float = 5.0
    split_hits: bool = True
    common_mode: bool = True
    # One rate per pixel for all the exposure's integrations (as the reference's median over
    # the exposure); the step then needs every integration at once (memory grows with NINTS).
    pool_integrations: bool = False
    # Extended events. None = as the reference's parameter files choose per mode: snowballs for
    # the near-IR detectors, showers for MIRI.
    expand_large_events: bool | None = None
    min_sat_area: float = 1.0
    min_jump_area: float = 5.0
    expand_factor: float = 2.0
    sat_required_snowball: bool = True
    min_sat_radius_extend: float = 2.5
    sat_expand: int = 2
    edge_size: int = 25
    mask_snowball_core_next_int: bool = True
    snowball_time_masked_next_int: float = 4000.0
    max_extended_radius: int = 200
    find_showers: bool | None = None
    extend_snr_threshold: float = 1.2
    extend_min_area: int = 90
    extend_inner_radius: float = 1.0
    extend_outer_radius: float = 2.6
    extend_ellipse_expand_ratio: float = 1.1
    time_masked_after_shower: float = 15.0
    max_shower_amplitude: float = 4.0


# Parameters that are the step's own business, not detect_jumps arguments.
_NOT_PASSED = {f.name for f in fields(StepParams)} | {"maximum_cores"}
# The detect_jumps options that flag_showers takes too.
_SHOWER_OPTIONS = [p.name for p in inspect.signature(flag_showers).parameters.values()
                   if p.kind is p.KEYWORD_ONLY and p.name not in ("pixeldq", "nthreads")]


@dataclass
class _JumpSetup:
    gain: np.ndarray
    readnoise: np.ndarray
    options: dict
    state: JumpState
    # The read noise of the ramps as they reach the step: the reference's, raised by the IPC
    # deconvolution when the ipc step ran on these blocks (see process_block).
    ramp_readnoise: np.ndarray | None = None
    n_jumps: int = 0
    n_snowballs: int = 0
    n_showers: int = 0
    # The flagged group DQ and the mean differences go into arrays reused from block to block.
    buffers: BlockBuffers | None = field(default_factory=BlockBuffers)


class JumpStep(RampStep):
    """Two-point-difference jump detection (block by block).

    The read noise of the test is the READNOISE reference's, times ``sqrt(read_variance_scale)``
    when the blocks carry that scale from the ipc step (its deconvolution raises the variance of
    the white read noise by ``sum(K**2)``: 4% for the simulated NIRCam kernel, 8% for MIRI's);
    run on its own, on ramps the ipc step corrected earlier, the step cannot know it and uses
    the reference's, as the reference pipeline does. Ramp fitting keeps the reference's read
    noise (its ERR agrees with the reference pipeline's).

    ``pool_integrations`` tests all the integrations of the exposure against one rate per pixel
    (the reference pipeline's median difference is also over the whole exposure): the rate is
    then known far better than from one integration, which is what limits the test where
    Poisson noise dominates (simulated NIRCam RAPID, 4 integrations: 83% instead of 78% of the
    4-6 sigma hits, at the same false-positive rate). Off by default: it assumes the rate does
    not change between integrations (not so for time series of variable sources), and the
    driver must then hand the step the whole exposure as one block, so memory grows with NINTS.

    Parameters are those of :class:`JumpParams` (the reference pipeline's, plus ``method``,
    ``negative_rejection_threshold``, ``split_hits``, ``common_mode`` and ``pool_integrations``;
    see :func:`jwpipe.jump_detection.detect_jumps`). The detector lines for the common-mode removal
    follow the exposure's FASTAXIS (rows for +-1, columns for +-2) and NOUTPUTS (amplifier
    segments along the line; one segment for MIRI, whose amplifiers interleave by column).
    """

    name = "jump"
    class_name = "JumpStep"
    cal_step = "jump"
    reference_types = ("gain", "readnoise")
    Params = JumpParams

    @property
    def needs_all_integrations(self) -> bool:  # type: ignore[override]
        """Pooling integrations needs them all in one block."""
        return bool(self.params.pool_integrations)

    def prepare(self, model, refs) -> _JumpSetup:
        from ..references import cut_to_subarray, open_reference

        arrays = {}
        for reftype in ("gain", "readnoise"):
            ref = open_reference(refs[reftype], reftype)
            arrays[reftype] = np.asarray(
                cut_to_subarray(ref.data, ref.meta, model.meta, name=refs[reftype]), np.float32)
        options = {f.name: getattr(self.params, f.name) for f in fields(self.params)
                   if f.name not in _NOT_PASSED}
        miri = str(model.meta.instrument.name or "").upper() == "MIRI"
        if options["expand_large_events"] is None:
            options["expand_large_events"] = not miri
        if options["find_showers"] is None:
            options["find_showers"] = miri
        exposure = model.meta.exposure
        fastaxis = model.meta.subarray.fastaxis
        noutputs = exposure.noutputs
        options.update(group_time=exposure.group_time, frame_time=exposure.frame_time,
                       nframes=exposure.nframes or 1,
                       fast_axis=int(fastaxis) if fastaxis in (1, -1, 2, -2) else 1,
                       noutputs=int(noutputs) if (noutputs or 0) >= 1 and not miri else 1)
        return _JumpSetup(arrays["gain"], arrays["readnoise"], options, JumpState())

    def process_block(self, block: RampBlock, setup: _JumpSetup) -> None:
        if setup.ramp_readnoise is None:
            scale = block.extras.get("read_variance_scale", 1.0)
            setup.ramp_readnoise = (setup.readnoise * np.sqrt(scale, dtype=np.float32)
                                    if np.any(np.asarray(scale) != 1.0) else setup.readnoise)
        shape = block.groupdq.shape
        out = setup.buffers.take("groupdq", shape, np.uint8)
        mean_diff = setup.buffers.take("mean_diff", (shape[0],) + shape[2:], np.float32)
        options = dict(setup.options, find_showers=False)
        result = detect_jumps(block.data, block.groupdq, setup.gain, setup.ramp_readnoise,
                              pixeldq=block.pixeldq, state=setup.state, nthreads=self.threads,
                              out=out, mean_diff_out=mean_diff, **options)
        # `out`, the block's until the next block. On an exposure's last block the driver holds
        # no other reference to the input group DQ: it is freed before the shower search.
        block.groupdq = result.groupdq
        if setup.options["find_showers"]:
            setup.n_showers += flag_showers(
                block.data, block.groupdq, result.mean_diff, setup.gain, setup.ramp_readnoise,
                pixeldq=block.pixeldq, nthreads=self.threads,
                **{name: setup.options[name] for name in _SHOWER_OPTIONS})
        block.pixeldq |= result.pixeldq
        setup.state = result.state
        setup.n_jumps += result.n_jumps
        setup.n_snowballs += result.n_snowballs

    def release(self, setup: _JumpSetup) -> _JumpSetup:
        # finish needs the counts only (not the references, nor the snowball cores)
        setup.gain = setup.readnoise = setup.ramp_readnoise = setup.state = None
        setup.buffers = None
        return setup

    def finish(self, model, setup: _JumpSetup) -> None:
        from ..logs import get_logger

        get_logger("step").info("jump: %d jumps, %d snowballs, %d showers", setup.n_jumps,
                                setup.n_snowballs, setup.n_showers)
