"""dark_current: subtract the dark current, group by group.

Dark references hold individual frames (NFRAMES=1, GROUPGAP=0). When the science exposure
matches that, dark frame g is subtracted from group g; otherwise a frame-averaged dark is built
first: dark group g is the mean of frames [start, start + NFRAMES), then start += NFRAMES +
GROUPGAP. MIRI darks are 4-D (one set of frames per integration): integration i uses dark
integration i, and the last dark integration is reused for later ones. NaN in the dark become 0
(no correction); the dark DQ is ORed into PIXELDQ (MIRI: the first-group DQ of every dark
integration). If the science exposure needs more frames than the dark holds, or the dark averages
or skips more frames than the science, the step is SKIPPED (the data are left as they are).

The average dark current (e-/s), used by ramp fitting for the dark's Poisson noise, is stored in
the ramp product's ``average_dark_current`` array (shape (ny, nx), float32), as the reference
pipeline does: the ``average_dark_current`` parameter if given, else the dark's 2-D
AVERAGE_DARK_CURRENT array if it is non-zero and of the right shape, else its AVDRKCUR keyword.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..logs import get_logger
from ._stage1_refs import dq_def_of, open_ref, or_into, ref_array, subarray_key
from .base import RampBlock, RampStep, StepParams, exposure_shape

__all__ = ["dark_frames_needed", "average_dark_frames", "subtract_dark", "DarkCurrentStep"]

log = get_logger("step.dark_current")


def dark_frames_needed(ngroups: int, nframes: int, groupgap: int) -> int:
    """Frames an integration of ``ngroups`` groups spans (the last group's gap excluded)."""
    return ngroups * nframes + (ngroups - 1) * groupgap


def average_dark_frames(frames, ngroups: int, nframes: int, groupgap: int) -> np.ndarray:
    """A dark matching the science group structure.

    Parameters
    ----------
    frames : ndarray of shape (nframes_total, ny, nx) or (nints, nframes_total, ny, nx), float32
        Individual dark frames (NaN already replaced).
    ngroups, nframes, groupgap : int
        Science NGROUPS, NFRAMES, GROUPGAP.

    Returns
    -------
    ndarray of shape (ngroups, ny, nx) or (nints, ngroups, ny, nx), float32
        Group g is the mean of frames [g*(nframes+groupgap), g*(nframes+groupgap) + nframes).
    """
    frames = np.asarray(frames, dtype=np.float32)
    axis = frames.ndim - 3
    need = dark_frames_needed(ngroups, nframes, groupgap)
    if frames.shape[axis] < need:
        raise ValueError(f"the dark has {frames.shape[axis]} frames; {need} are needed")
    shape = frames.shape[:axis] + (ngroups,) + frames.shape[-2:]
    out = np.empty(shape, np.float32)
    step = nframes + groupgap
    for g in range(ngroups):
        start = g * step
        if nframes == 1:
            out[..., g, :, :] = frames[..., start, :, :]
        else:
            out[..., g, :, :] = frames[..., start:start + nframes, :, :].mean(axis=axis)
    return out


def subtract_dark(data: np.ndarray, dark: np.ndarray, int_start: int = 0) -> None:
    """Subtract a (frame-matched) dark from every group, in place.

    Parameters
    ----------
    data : ndarray of shape (nints, ngroups, ny, nx), float32
        Updated in place.
    dark : ndarray of shape (ngroups, ny, nx) or (dark_nints, ngroups, ny, nx), float32
        Dark groups without NaN. A 4-D dark is integration dependent: integration ``int_start +
        i`` uses dark integration ``min(int_start + i, dark_nints - 1)``.
    int_start : int
        Index of ``data[0]`` among the integrations (for 4-D darks).
    """
    ngroups = data.shape[1]
    if dark.ndim == 3:
        np.subtract(data, dark[:ngroups], out=data)
        return
    last = dark.shape[0] - 1
    for i in range(data.shape[0]):
        np.subtract(data[i], dark[min(int_start + i, last), :ngroups], out=data[i])


@dataclass
class DarkCurrentParams(StepParams):
    #: File to save the (frame-averaged) dark that is subtracted.
    dark_output: str | None = None
    #: Average dark current of the detector in e-/s (overrides the dark reference's value).
    average_dark_current: float | None = None


#: A frame-matched dark larger than this is not kept in memory: each block's dark groups are
#: computed from the reference file as they are subtracted (override: JWPIPE_DARK_RESIDENT_MB).
RESIDENT_BYTES = int(float(os.environ.get("JWPIPE_DARK_RESIDENT_MB", "64")) * 2**20)


class _DarkFrames:
    """Dark groups read from the reference on demand, one group at a time.

    Group ``g`` of dark integration ``i`` is computed exactly as :func:`average_dark_frames`
    computes it from the whole frame stack (the same frames, NaN set to 0, the same mean), so
    results do not depend on whether the dark is resident.
    """

    def __init__(self, source, key, four_d: bool, nints: int, matched: bool, nframes: int,
                 groupgap: int, nthreads: int = 1):
        self.source, self.key, self.four_d, self.nints = source, key, four_d, nints
        self.matched, self.nframes, self.groupgap = matched, nframes, groupgap
        self.nthreads = nthreads
        self._buffer = None
        # Plain big-endian float32 frames (every real dark): read as stored and converted,
        # averaged and subtracted in one compiled pass.
        self.fused = (hasattr(source, "read_stored") and source.stored == np.dtype(">f4")
                      and source.bzero in (None, 0) and source.bscale in (None, 1))

    def _frames_key(self, dark_int: int, g: int):
        start, count = (g, 1) if self.matched else (g * (self.nframes + self.groupgap),
                                                    self.nframes)
        lead = ((dark_int,) if self.four_d else ()) + (slice(start, start + count),)
        shape = (count,) + tuple(b - a for a, b in (s.indices(n)[:2] for s, n in zip(
            self.key[-2:], self.source.shape[-2:], strict=True)))
        return lead + (Ellipsis,) + tuple(self.key[-2:]), shape

    def _frames_buffer(self, shape) -> np.ndarray:
        """The float32 buffer the frames of one group are read into, reused between groups."""
        if self._buffer is None or self._buffer.shape != shape:
            self._buffer = np.empty(shape, np.float32)
        return self._buffer

    def group(self, dark_int: int, g: int) -> np.ndarray:
        """Dark group ``g`` (of dark integration ``dark_int`` for 4-D darks), (ny, nx) float32."""
        full, shape = self._frames_key(dark_int, g)
        frames = self.source.read(full, np.float32, out=self._frames_buffer(shape))
        frames[np.isnan(frames)] = 0.0
        return frames[0] if shape[0] == 1 else frames.mean(axis=0)

    def _subtract_group(self, planes: np.ndarray, dark_int: int, g: int) -> None:
        """``planes -= dark group g``; planes (n, ny, nx) float32 views into the block."""
        rows = planes.strides[2] == 4 and planes.strides[1] == 4 * planes.shape[2]
        if not self.fused or not rows:
            np.subtract(planes, self.group(dark_int, g), out=planes)
            return
        from .._ext import _convert

        full, shape = self._frames_key(dark_int, g)
        stored = self.source.read_stored(full, out=self._frames_buffer(shape).view(">f4"))
        _convert.dark_subtract_be(planes.reshape(planes.shape[0], -1),
                                  stored.view(np.uint32).reshape(shape[0], -1), self.nthreads)

    def subtract(self, data: np.ndarray, int_start: int) -> None:
        """As :func:`subtract_dark`, group by group."""
        ngroups = data.shape[1]
        last = self.nints - 1
        for g in range(ngroups):
            if not self.four_d:
                self._subtract_group(data[:, g], 0, g)
                continue
            for i in range(data.shape[0]):
                self._subtract_group(data[i:i + 1, g], min(int_start + i, last), g)


@dataclass
class _DarkState:
    dark: np.ndarray | None
    pixel_flags: np.ndarray | None
    status: str
    frames: _DarkFrames | None = None


class DarkCurrentStep(RampStep):
    """Subtract the DARK reference (frame-averaged to the science read pattern)."""

    name = "dark_current"
    class_name = "DarkCurrentStep"
    cal_step = "dark_sub"
    reference_types = ("dark",)
    Params = DarkCurrentParams

    def prepare(self, model, refs):
        path = refs["dark"]
        name = str(path)
        ref = open_ref(path, "dark")
        exposure = model.meta.exposure
        sci_ngroups = int(exposure.ngroups or model.shape[1])
        sci_nframes = int(exposure.nframes or 1)
        sci_groupgap = int(exposure.groupgap or 0)
        source = ref.lazy("data")
        four_d = len(source.shape) == 4
        drk_ngroups = source.shape[-3]
        drk_nframes = int(ref.meta.exposure.nframes or 1)
        drk_groupgap = int(ref.meta.exposure.groupgap or 0)
        self._set_average_dark_current(model, ref, name)

        need = dark_frames_needed(sci_ngroups, sci_nframes, sci_groupgap)
        have = dark_frames_needed(drk_ngroups, drk_nframes, drk_groupgap)
        if need > have:
            log.warning("%s: not enough data in the dark (%d frames) for the science data (%d "
                        "frames); dark_current skipped", name, have, need)
            return _DarkState(None, None, "SKIPPED")
        if drk_nframes > sci_nframes or drk_groupgap > sci_groupgap:
            log.warning("%s: the dark's NFRAMES/GROUPGAP (%d/%d) exceed the science data's "
                        "(%d/%d); dark_current skipped", name, drk_nframes, drk_groupgap,
                        sci_nframes, sci_groupgap)
            return _DarkState(None, None, "SKIPPED")

        matched = sci_nframes == drk_nframes and sci_groupgap == drk_groupgap
        flags = self._dark_dq(ref, model.meta, name)
        nints = int(exposure.nints or model.shape[0])
        dark_ints = max(1, min(source.shape[0], nints)) if four_d else 1
        ny, nx = exposure_shape(model)[-2:]
        if (not self.params.dark_output
                and dark_ints * sci_ngroups * ny * nx * 4 > RESIDENT_BYTES):
            key = subarray_key(source.shape, ref.meta, model.meta, name=name)
            frames = _DarkFrames(source, key, four_d, dark_ints, matched, sci_nframes,
                                 sci_groupgap, self.threads)
            return _DarkState(None, flags, "COMPLETE", frames)
        nread = sci_ngroups if matched else min(drk_ngroups, need)
        lead = (slice(None), slice(0, nread)) if four_d else (slice(0, nread),)
        frames = ref_array(ref, "data", model.meta, name=name, lead=lead)
        frames[np.isnan(frames)] = 0.0
        if four_d and not matched:
            nints = int(exposure.nints or model.shape[0])
            frames = frames[:max(1, min(frames.shape[0], nints))]
        dark = frames if matched else average_dark_frames(frames, sci_ngroups, sci_nframes,
                                                          sci_groupgap)
        if self.params.dark_output:
            self._save_dark(ref, dark, flags, sci_ngroups, sci_nframes, sci_groupgap)
        return _DarkState(dark, flags, "COMPLETE")

    def process_block(self, block: RampBlock, state: _DarkState) -> None:
        if state.frames is not None:
            state.frames.subtract(block.data, block.int_start)
        elif state.dark is not None:
            subtract_dark(block.data, state.dark, block.int_start)
        else:
            return
        or_into(block.pixeldq, state.pixel_flags)

    def release(self, state: _DarkState) -> _DarkState:
        return _DarkState(None, None, state.status)  # finish needs the status only

    def finish(self, model, state: _DarkState) -> None:
        self.record_status(model, state.status)

    # -- helpers -------------------------------------------------------------------------------
    def _dark_dq(self, ref, sci_meta, name):
        from ..references import translate_dq

        if not ref.has("dq"):
            return None
        source = ref.lazy("dq")
        key = subarray_key(source.shape, ref.meta, sci_meta, name=name)
        if len(source.shape) == 4:
            raw = np.asarray(source[(slice(None), 0, Ellipsis) + tuple(key[-2:])])
            raw = np.bitwise_or.reduce(raw.astype(np.uint32), axis=0)
        elif len(source.shape) == 3:
            raw = np.asarray(source[(0, Ellipsis) + tuple(key[-2:])])
        else:
            raw = np.asarray(source[(Ellipsis,) + tuple(key[-2:])])
        return np.ascontiguousarray(translate_dq(raw, dq_def_of(ref), name=name),
                                    dtype=np.uint32)

    def _set_average_dark_current(self, model, ref, name):
        ny, nx = int(model.meta.subarray.ysize or 0), int(model.meta.subarray.xsize or 0)
        if not ny or not nx:
            ny, nx = ref.lazy("data").shape[-2:]
        if self.params.average_dark_current is not None:
            value = float(self.params.average_dark_current)
            model.average_dark_current = _constant_image(value, (ny, nx))
            log.info("using Poisson noise from average dark current %s e-/s", value)
            return
        array = None
        if "average_dark_current" in type(ref).arrays and ref.has("average_dark_current"):
            array = ref_array(ref, "average_dark_current", model.meta, name=name)
        if array is not None and np.sum(array) != 0.0:
            if array.shape == (ny, nx):
                model.average_dark_current = array
            else:
                log.warning("%s: average_dark_current has shape %s, the data %s; not applied",
                            name, array.shape, (ny, nx))
            return
        value = ref.meta.exposure.average_dark_current  # the AVDRKCUR keyword
        if value is not None:
            model.average_dark_current = _constant_image(value, (ny, nx))

    def _save_dark(self, ref, dark, flags, ngroups, nframes, groupgap):
        from .. import datamodels

        cls = datamodels.DarkMIRIModel if dark.ndim == 4 else datamodels.DarkModel
        out = cls()
        out.data = dark
        if flags is not None:
            out.dq = flags
        out.__dict__["_tree"] = __import__("copy").deepcopy(ref._tree)
        out.__dict__["extra_fits"] = {k: list(v) for k, v in ref.extra_fits.items()}
        out.meta.model_type = cls.model_type
        out.meta.exposure.nframes = nframes
        out.meta.exposure.ngroups = ngroups
        out.meta.exposure.groupgap = groupgap
        path = Path(self.params.dark_output)
        if self.params.output_dir and not path.is_absolute():
            path = Path(self.params.output_dir) / path
        out.save(path)
        log.info("saved the dark used to %s", path)


def _constant_image(value: float, shape: tuple[int, int]) -> np.ndarray:
    """A read-only (ny, nx) float32 view of one value: no full-frame array is allocated, and
    ramp fitting recognises it as a constant (written out in full only if the ramp is saved)."""
    return np.broadcast_to(np.float32(value), shape)
