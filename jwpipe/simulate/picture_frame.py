"""Synthetic NIRSpec "picture frame": a thermal glow along the edges of the full frame that grows
through each integration, and the PICTUREFRAME reference that describes its shape.

The glow adds ``amplitude * (1 - exp(-t / TAU)) * shape`` DN of linear signal to each read at
``t`` seconds after the reset. ``shape`` is a frame :data:`WIDTH` pixels wide inside the
reference-pixel border (the band the reference pipeline measures the frame's level in), falling
off within a few pixels inside it, and a little stronger on the left than on the right; it is 0
in the reference pixels. With ``TAU`` comparable to a ramp the glow is not linear in time, so a
slope fitted through it is biased by a different amount in every group: what the per-group
picture_frame correction is for. The reference file holds ``shape`` times :data:`REFERENCE_RATE`
(a rate image; the step only uses its shape).
"""

from __future__ import annotations

import numpy as np

__all__ = ["TAU", "WIDTH", "FALLOFF", "REFERENCE_RATE", "frame_shape", "picture_frame_reads"]

#: Time constant of the glow (s): about the length of a 10-group NRSRAPID ramp.
TAU = 100.0
#: Width of the frame inside the reference-pixel border (pixels).
WIDTH = 71
#: e-folding length of the frame's inner edge (pixels).
FALLOFF = 2.0
#: DN/s at the border in the PICTUREFRAME reference's image.
REFERENCE_RATE = 0.05
#: Reference-pixel border of the NIRSpec full frame (pixels).
_BORDER = 4


def frame_shape(shape: tuple[int, int] = (2048, 2048)) -> np.ndarray:
    """The glow's shape over the full frame.

    Returns
    -------
    ndarray of shape ``shape``, float32
        1 up to :data:`WIDTH` pixels inside the reference-pixel border, ``exp(-(d - WIDTH) /
        FALLOFF)`` at ``d`` pixels beyond that, times a gentle left-right gradient (1.1 to 0.9);
        0 in the border.
    """
    ny, nx = shape
    y = np.arange(ny)
    x = np.arange(nx)
    dy = np.minimum(y - _BORDER, ny - 1 - _BORDER - y)
    dx = np.minimum(x - _BORDER, nx - 1 - _BORDER - x)
    depth = np.minimum(dy[:, None], dx[None, :]).astype(np.float64)
    glow = np.exp(-np.maximum(depth - WIDTH, 0.0) / FALLOFF) * (1.1 - 0.2 * x / (nx - 1))[None, :]
    glow[depth < 0] = 0.0
    return glow.astype(np.float32)


def picture_frame_reads(amplitude: float, read_times: np.ndarray,
                        shape: tuple[int, int] = (2048, 2048)) -> np.ndarray:
    """The glow's signal at every read of an integration.

    Parameters
    ----------
    amplitude : float
        DN the glow would reach at the border after a long integration.
    read_times : ndarray of shape (nread,)
        Seconds from the reset to each read.

    Returns
    -------
    ndarray of shape (nread, ny, nx), float32
        DN of linear signal.
    """
    growth = (amplitude * (1.0 - np.exp(-np.asarray(read_times, np.float64) / TAU)))
    return growth.astype(np.float32)[:, None, None] * frame_shape(shape)[None]
