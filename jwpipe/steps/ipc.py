"""ipc: undo inter-pixel capacitance by convolving each group with a deconvolution kernel.

The IPC reference holds either one small kernel (2-D, e.g. 3x3, centre ~1.02 and small negative
neighbours) or a kernel per pixel (4-D, (ky, kx, ny, nx) on the full detector). Each group's
science region is convolved with it in place; reference pixels neither contribute (they count as
zero) nor change, as in the reference pipeline: for output pixel (y, x)::

    out[y, x] = sum_{j,i} K[j, i] * S[y + (ky-1-j) - ky//2, x + (kx-1-i) - kx//2]

The convolution runs in a compiled kernel (``jwpipe._ext._ipc``) that keeps a ring of ky input
rows, so each image is read and written once. NaN kernel values: in a 2-D kernel a NaN
off-centre element counts as 0 (NaN in the centre is an error); in a 4-D kernel a pixel whose
kernel holds any NaN is left uncorrected (identity kernel). The reference pipeline would spread the
NaN through the image instead. NIRSpec IRS2 frames: the normal pixels are taken out, corrected
and put back (the reference output and interleaved reference pixels are left alone).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._ext import _ipc
from ..errors import ReferenceFileError
from ..irs2 import from_irs2, to_irs2
from ..logs import get_logger
from ._stage1_refs import irs2_rows
from .base import RampBlock, RampStep, StepParams, exposure_shape

__all__ = ["ReferenceBorder", "reference_border", "prepare_kernel", "ipc_convolve",
           "read_variance_scale", "IPCParams", "IPCStep"]

log = get_logger("ipc")

NIR_SIZE = 2048
MIRI_COLS = 1032
NIR_REF = 4


class ReferenceBorder(NamedTuple):
    """Reference rows/columns of an array at each edge (DMS orientation)."""

    bottom_rows: int
    top_rows: int
    left_columns: int
    right_columns: int


def reference_border(xstart: int, ystart: int, xsize: int, ysize: int,
                     miri: bool = False) -> ReferenceBorder:
    """How many reference rows/columns a (sub)array has at each edge.

    Parameters
    ----------
    xstart, ystart : int
        SUBSTRT1, SUBSTRT2 (1-based).
    xsize, ysize : int
        SUBSIZE1, SUBSIZE2.
    miri : bool
        MIRI detectors have reference columns only (4 at each side of 1032 columns).

    Returns
    -------
    ReferenceBorder
    """
    x0, y0 = xstart - 1, ystart - 1
    if miri:
        return ReferenceBorder(0, 0, max(0, NIR_REF - x0),
                               max(0, x0 + xsize - (MIRI_COLS - NIR_REF)))
    return ReferenceBorder(max(0, NIR_REF - y0), max(0, y0 + ysize - (NIR_SIZE - NIR_REF)),
                           max(0, NIR_REF - x0), max(0, x0 + xsize - (NIR_SIZE - NIR_REF)))


def prepare_kernel(kernel: np.ndarray, region_shape: tuple[int, int] | None = None,
                   name: str = "IPC kernel") -> tuple[np.ndarray, bool]:
    """Validate an IPC kernel and put it in the compiled kernel's layout.

    Parameters
    ----------
    kernel : ndarray of shape (ky, kx) or (ky, kx, ny, nx)
        A small kernel, or a kernel per pixel already cut to the science region.
    region_shape : (ny, nx), optional
        The science region; a per-pixel kernel must match it.
    name : str
        For messages (the reference file).

    Returns
    -------
    kernel4 : ndarray of shape (ky, kx, 1, 1) or (ky, kx, ny, nx), float32, C-contiguous
    per_pixel : bool

    Raises
    ------
    ReferenceFileError
        Wrong dimensionality, a per-pixel kernel not matching the region, or a NaN centre in a
        2-D kernel.
    """
    k = np.asarray(kernel)
    if k.ndim == 2:
        ky, kx = k.shape
        k = np.array(k, dtype=np.float32, order="C")    # a private copy we may clean
        bad = ~np.isfinite(k)
        if bad[ky // 2, kx // 2]:
            raise ReferenceFileError(f"{name}: the centre of the IPC kernel is not finite")
        if bad.any():
            warnings.warn(f"{name}: {int(bad.sum())} non-finite IPC kernel element(s) treated "
                          "as 0", stacklevel=2)
            k[bad] = 0.0
        return k.reshape(ky, kx, 1, 1), False
    if k.ndim == 4:
        if region_shape is not None and tuple(k.shape[2:]) != tuple(region_shape):
            raise ReferenceFileError(f"{name}: per-pixel IPC kernel covers {k.shape[2:]} pixels; "
                                     f"the science region is {tuple(region_shape)}")
        ky, kx = k.shape[:2]
        k = np.array(k, dtype=np.float32, order="C")
        bad = ~np.isfinite(k).all(axis=(0, 1))
        if bad.any():
            log.warning("%s: %d pixel(s) have a non-finite IPC kernel; they are left uncorrected",
                        name, int(bad.sum()))
            k[:, :, bad] = 0.0
            k[ky // 2, kx // 2, bad] = 1.0
        return k, True
    raise ReferenceFileError(f"{name}: an IPC kernel must be 2-D or 4-D, got shape {k.shape}")


def ipc_convolve(images: np.ndarray, kernel4: np.ndarray, per_pixel: bool,
                 border: ReferenceBorder, nthreads: int = 1) -> None:
    """Convolve the science region of each image with the IPC kernel, in place.

    Parameters
    ----------
    images : ndarray of shape (m, ny, nx), float32, C-contiguous
        Modified in place; reference pixels (``border``) are left unchanged.
    kernel4 : ndarray of shape (ky, kx, 1, 1) or (ky, kx, sny, snx), float32
        From :func:`prepare_kernel`.
    per_pixel : bool
        Whether ``kernel4`` holds a kernel per science pixel.
    border : ReferenceBorder
    nthreads : int
        Threads (images are shared out).
    """
    m, ny, nx = images.shape
    y0, y1 = border.bottom_rows, ny - border.top_rows
    x0, x1 = border.left_columns, nx - border.right_columns
    if y1 <= y0 or x1 <= x0:
        return
    _ipc.ipc_convolve(images, y0, y1, x0, x1, kernel4, per_pixel, nthreads)


def read_variance_scale(kernel4: np.ndarray, per_pixel: bool) -> float | np.ndarray:
    """How much the deconvolution raises the variance of read noise: ``sum(K**2)``.

    Read noise is added by the readout electronics, after the capacitive coupling, so it is white
    in the raw data (the READNOISE reference is measured there); convolving with the
    deconvolution kernel ``K`` (centre ~1.02 for NIRCam, ~1.04 for MIRI) multiplies its variance
    by the sum of the squared kernel elements (1.04 and 1.08). Poisson noise went through the
    coupling and comes back to what it was, so only the read noise changes. Neighbours that are
    reference pixels count as 0 in the convolution; the scale ignores that (edge pixels only).

    Parameters
    ----------
    kernel4 : ndarray of shape (ky, kx, 1, 1) or (ky, kx, ny, nx), float32
        From :func:`prepare_kernel`.
    per_pixel : bool

    Returns
    -------
    float, or ndarray of shape (ny, nx), float32, for a kernel per pixel
    """
    k = np.asarray(kernel4, np.float64)
    squares = np.sum(k * k, axis=(0, 1))
    return squares.astype(np.float32) if per_pixel else float(squares[0, 0])


@dataclass
class IPCParams(StepParams):
    pass


@dataclass
class IPCPlan:
    kernel: np.ndarray
    per_pixel: bool
    border: ReferenceBorder
    read_variance_scale: float | np.ndarray = 1.0
    irs2_rows: np.ndarray | None = None  # IRS2 frames: the rows of their normal pixels


class IPCStep(RampStep):
    """Deconvolve inter-pixel capacitance with the IPC reference kernel.

    Each block it corrects carries ``extras["read_variance_scale"]`` (:func:`read_variance_scale`)
    for the noise model of the jump step; a per-pixel scale covers the science region only and
    is padded with 1 over the reference pixels.
    """

    name = "ipc"
    class_name = "IPCStep"
    cal_step = "ipc"
    reference_types = ("ipc",)
    Params = IPCParams

    def prepare(self, model, refs) -> IPCPlan:
        from ..references import cut_to_subarray, open_reference

        path = refs["ipc"]
        meta = model.meta
        shape = exposure_shape(model)
        # IRS2 frames: the kernel works on their normal pixels, taken out and put back.
        rows = irs2_rows(model)
        ny, nx = shape[-2:] if rows is None else (int(rows.sum()), shape[-1])
        sub = meta.subarray
        xstart, ystart = sub.xstart or 1, sub.ystart or 1
        xsize, ysize = sub.xsize or nx, sub.ysize or ny
        miri = str(meta.get("instrument.name") or "").upper() == "MIRI"
        border = reference_border(xstart, ystart, xsize, ysize, miri)
        ref = open_reference(path, "ipc")
        try:
            kernel = ref.lazy("data")
            if kernel is None:
                raise ReferenceFileError(f"{path}: extension SCI holds no IPC kernel")
            if kernel.ndim == 4:
                kernel = cut_to_subarray(kernel, ref.meta, meta, name=str(path))
                kernel = np.asarray(kernel[..., border.bottom_rows:ny - border.top_rows,
                                           border.left_columns:nx - border.right_columns])
            else:
                kernel = np.asarray(ref.data)
            kernel4, per_pixel = prepare_kernel(
                kernel, (ny - border.bottom_rows - border.top_rows,
                         nx - border.left_columns - border.right_columns), str(path))
        finally:
            ref.close()
        scale = read_variance_scale(kernel4, per_pixel)
        if per_pixel:  # science region -> whole array, 1 on the reference pixels
            full = np.ones((ny, nx), np.float32)
            full[border.bottom_rows:ny - border.top_rows,
                 border.left_columns:nx - border.right_columns] = scale
            scale = full
        return IPCPlan(kernel4, per_pixel, border, scale, rows)

    def process_block(self, block: RampBlock, plan: IPCPlan) -> None:
        rows = plan.irs2_rows
        data = block.data if rows is None else np.ascontiguousarray(from_irs2(block.data, rows))
        images = np.reshape(data, (-1,) + data.shape[-2:], copy=False)
        ipc_convolve(images, plan.kernel, plan.per_pixel, plan.border, self.threads)
        if rows is not None:
            to_irs2(block.data, data, rows)
        block.extras["read_variance_scale"] = plan.read_variance_scale

    def release(self, plan: IPCPlan) -> None:
        return None  # a per-pixel kernel is 9 planes of the frame; finish needs nothing
