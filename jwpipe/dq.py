"""Data-quality bit flags, the single table shared by Python and the compiled kernels.

PIXELDQ and DQ arrays are uint32 and may carry any flag; GROUPDQ arrays are uint8 and carry
only the group flags (bits 0-7). The C header ``dqflags.h`` used by ``jwpipe/_ext`` is generated
from :data:`FLAGS` at build time, so the two sides cannot drift apart.
"""

from __future__ import annotations

from enum import IntFlag

import numpy as np

__all__ = ["FLAGS", "GROUP_FLAGS", "DQ", "interpret", "describe"]

#: (bit, name, meaning) for every JWST DQ bit, in bit order.
FLAGS: tuple[tuple[int, str, str], ...] = (
    (0, "DO_NOT_USE", "Bad pixel or group; do not use for science"),
    (1, "SATURATED", "Pixel saturated during the integration"),
    (2, "JUMP_DET", "Jump (cosmic ray) detected in this group"),
    (3, "DROPOUT", "Data lost in transmission"),
    (4, "OUTLIER", "Flagged by outlier detection"),
    (5, "PERSISTENCE", "High persistence"),
    (6, "AD_FLOOR", "Below the A/D floor"),
    (7, "CHARGELOSS", "Charge migration (brighter-fatter) affected"),
    (8, "RESERVED", "Reserved"),
    (9, "NON_SCIENCE", "Pixel not on science portion of detector"),
    (10, "DEAD", "Dead pixel"),
    (11, "HOT", "Hot pixel"),
    (12, "WARM", "Warm pixel"),
    (13, "LOW_QE", "Low quantum efficiency"),
    (14, "RC", "RC pixel"),
    (15, "TELEGRAPH", "Telegraph pixel"),
    (16, "NONLINEAR", "Pixel highly nonlinear"),
    (17, "BAD_REF_PIXEL", "Reference pixel cannot be used"),
    (18, "NO_FLAT_FIELD", "Flat field cannot be measured"),
    (19, "NO_GAIN_VALUE", "Gain cannot be measured"),
    (20, "NO_LIN_CORR", "Linearity correction not available"),
    (21, "NO_SAT_CHECK", "Saturation check not available"),
    (22, "UNRELIABLE_BIAS", "Bias variance large"),
    (23, "UNRELIABLE_DARK", "Dark variance large"),
    (24, "UNRELIABLE_SLOPE", "Slope variance large (i.e., noisy pixel)"),
    (25, "UNRELIABLE_FLAT", "Flat variance large"),
    (26, "OPEN", "Open pixel (counts move to adjacent pixels)"),
    (27, "ADJ_OPEN", "Adjacent to open pixel"),
    (28, "FLUX_ESTIMATED", "Pixel flux estimated due to missing/bad data"),
    (29, "MSA_FAILED_OPEN", "Pixel sees light from failed-open shutter"),
    (30, "OTHER_BAD_PIXEL", "A catch-all flag"),
    (31, "REFERENCE_PIXEL", "Pixel is a reference pixel"),
)

#: Names of the flags a uint8 GROUPDQ array may hold.
GROUP_FLAGS: tuple[str, ...] = tuple(
    name for bit, name, _ in FLAGS if bit < 8 and name != "OUTLIER")

DQ = IntFlag("DQ", {name: 1 << bit for bit, name, _ in FLAGS})
DQ.__doc__ = "JWST data-quality flags as an IntFlag (``DQ.SATURATED == 2``)."

# Module-level constants for hot code: ``dq.SATURATED`` is a plain int, cheap in numpy ops.
for _bit, _name, _ in FLAGS:
    globals()[_name] = 1 << _bit
    __all__.append(_name)
GOOD = 0
__all__.append("GOOD")

_BY_NAME = {name: 1 << bit for bit, name, _ in FLAGS}


def interpret(flags: int | str | list[str] | tuple[str, ...] | None) -> int:
    """Turn a flag specification into a bit mask.

    Parameters
    ----------
    flags : int, str, sequence of str or None
        An integer mask, a name (``"SATURATED"``), names joined by ``+`` or ``,``
        (``"DO_NOT_USE+NON_SCIENCE"``) or a sequence of names. A leading ``~`` inverts the
        resulting 32-bit mask. ``None`` means no flags.

    Returns
    -------
    int
        The 32-bit mask.

    Raises
    ------
    ValueError
        On an unknown flag name, naming it.
    """
    if flags is None:
        return 0
    if isinstance(flags, (int, np.integer)):
        return int(flags) & 0xFFFFFFFF
    invert = False
    if isinstance(flags, str):
        text = flags.strip()
        if text.startswith("~"):
            invert, text = True, text[1:]
        names = [n.strip() for n in text.replace(",", "+").split("+") if n.strip()]
    else:
        names = list(flags)
    mask = 0
    for name in names:
        key = str(name).strip().upper()
        if key.isdigit():
            mask |= int(key)
            continue
        if key not in _BY_NAME:
            raise ValueError(f"unknown DQ flag name {name!r}; known flags: {', '.join(_BY_NAME)}")
        mask |= _BY_NAME[key]
    return (~mask & 0xFFFFFFFF) if invert else mask


def describe(value: int) -> list[str]:
    """Return the names of the flags set in ``value`` (bit order)."""
    value = int(value)
    return [name for bit, name, _ in FLAGS if value & (1 << bit)]
