"""NIRSpec IRS2 exposures and REFPIX references, made from ordinary simulated exposures.

:func:`irs2_exposure` turns a full-frame NRS1/NRS2 ``_uncal`` file (any READPATT) into the IRS2
layout the detector would have read (:mod:`jwpipe.irs2`): the same normal pixels, plus the
reference output and the interleaved reference pixels (bias and white read noise), and a
common-mode noise every output sees at the same instant: a level per group and detector row,
the slow drifts IRS2 is there to remove. :func:`irs2_refpix_reference` writes the REFPIX
reference (the IRS2 table of Fourier weights) that the refpix step needs for such data.

Truth: the normal pixels are the input's, so the ordinary exposure's truth file still holds;
the common-mode noise added is returned (and is what a perfect correction takes out).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from ..irs2 import dms_row_mask, irs2_length

__all__ = ["irs2_exposure", "irs2_refpix_reference"]


def irs2_exposure(uncal, output, *, readpatt: str = "NRSIRS2RAPID", common_rms: float = 20.0,
                  reference_noise: float = 3.0, seed: int = 1) -> np.ndarray:
    """Write the IRS2 version of a full-frame NIRSpec ``uncal`` exposure.

    Parameters
    ----------
    uncal : path
        A simulated full-frame NRS1 or NRS2 ``_uncal`` file (2048 x 2048 frames).
    output : path
        The IRS2 ``_uncal`` file to write (frames of 3200 x 2048; READPATT ``readpatt``,
        NRS_NORM = 16, NRS_REF = 4).
    readpatt : str
        NRSIRS2RAPID or NRSIRS2.
    common_rms : float
        rms of the common-mode noise, DN, one value per group and detector row.
    reference_noise : float
        Read noise of the reference output and interleaved reference pixels, DN.
    seed : int

    Returns
    -------
    ndarray of shape (nints, ngroups, 2048), float32
        The common-mode noise added, per group and detector row (for NRS1 the DMS column; for
        NRS2 the DMS column counted from the other side).
    """
    rng = np.random.default_rng(seed)
    with fits.open(uncal) as hdul:
        primary = hdul[0].header.copy()
        sci = hdul["SCI"].data.astype(np.float32)
        sci_header = hdul["SCI"].header.copy()
        tables = [h.copy() for h in hdul[2:] if h.name in ("GROUP", "INT_TIMES")]
    nints, ngroups, ny, nx = sci.shape
    detector = str(primary.get("DETECTOR", "")).upper()
    rows = dms_row_mask(detector, irs2_length(16, 4), 16, 4)
    if (ny, nx) != (int(rows.sum()), 2048):
        raise ValueError(f"{uncal}: frames of {ny}x{nx}; an IRS2 version needs full frames")
    raw = np.empty((nints, ngroups, rows.size, nx), np.float32)
    bias = float(np.median(sci[:, 0]))
    raw[..., ~rows, :] = bias + rng.normal(0.0, reference_noise, raw[..., ~rows, :].shape)
    raw[..., rows, :] = sci
    # A detector row is a DMS column (NRS2: turned by 180 degrees), read at one time by all
    # five outputs.
    common = rng.normal(0.0, common_rms, (nints, ngroups, nx)).astype(np.float32)
    raw += (common if detector == "NRS1" else common[..., ::-1])[:, :, None, :]
    primary["READPATT"] = readpatt
    primary["NRS_NORM"] = 16
    primary["NRS_REF"] = 4
    hdus = [fits.PrimaryHDU(header=primary),
            fits.ImageHDU(np.clip(np.rint(raw), 0, 65535).astype(np.uint16), sci_header,
                          name="SCI")]
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus + tables).writeto(output, overwrite=True)
    return common


def irs2_refpix_reference(path, *, detector: str = "NRS1", alpha: complex = 1.0,
                          beta: complex = 0.0, readpatt: str = "NRSIRS2RAPID") -> Path:
    """Write an IRS2 REFPIX reference with the same weights at every frequency.

    ``alpha`` weighs the reference output's spectrum, ``beta`` that of each amplifier's
    interleaved reference pixels (columns alpha_0..3, beta_0..3 of the IRS2 table: real and
    imaginary parts alternately, 2 x 712 x 2048 rows); the DQ table marks no bad reference
    pixel. alpha = 1, beta = 0 subtracts the reference output's time series as it is.
    """
    n = 712 * 2048
    columns = []
    for name, value in (("alpha", complex(alpha)), ("beta", complex(beta))):
        interleaved = np.empty(2 * n, np.float32)
        interleaved[0::2], interleaved[1::2] = value.real, value.imag
        columns += [fits.Column(f"{name}_{amp}", "E", array=interleaved) for amp in range(4)]
    dq_table = fits.BinTableHDU.from_columns(
        [fits.Column("OUTPUT", "I", array=np.zeros(0, np.int16)),
         fits.Column("ODD_EVEN", "I", array=np.zeros(0, np.int16)),
         fits.Column("MASK", "J", array=np.zeros(0, np.int32))], name="DQ")
    primary = fits.Header({"REFTYPE": "REFPIX", "INSTRUME": "NIRSPEC", "DETECTOR": detector,
                           "READPATT": readpatt, "DATAMODL": "IRS2Model"})
    fits.HDUList([fits.PrimaryHDU(header=primary),
                  fits.BinTableHDU.from_columns(columns, name="IRS2"),
                  dq_table]).writeto(path, overwrite=True)
    return Path(path)
