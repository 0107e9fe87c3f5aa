"""SIRSKERNEL references (the refpix step's SIRS kernels) with kernels chosen by the caller.

The flight SIRSKERNEL files are not in the shared data; these stand in for them (the simulated
CRDS cache holds one per near-IR detector, ``refs._build_sirskernel``), in the same format
(ASDF: per lower-case detector name, ``gamma`` and ``zeta``, the real-FFT coefficients of the
left and right kernels of the 4 amplifiers, 1025 each for 2048 rows).
:func:`lagged_coefficients` builds the coefficients of kernels made of a few weighted lags, whose
effect on a known row signal is known exactly (the truth of the SIRS tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .refs import _save  # the simulated cache's ASDF writer (filename, date, atomic)

__all__ = ["lagged_coefficients", "sirskernel_tree", "write_sirskernel_reference"]

NROWS = 2048


def lagged_coefficients(taps: dict[int, float], nrows: int = NROWS) -> np.ndarray:
    """Real-FFT coefficients of a kernel with the given taps.

    Parameters
    ----------
    taps : dict of int -> float
        Lag -> weight: the corrected row ``y`` takes ``weight`` x the reference row ``y - lag``.
    nrows : int
        Rows of the detector (the kernel's period).

    Returns
    -------
    ndarray of shape (nrows // 2 + 1,), complex128
    """
    kernel = np.zeros(nrows)
    for lag, weight in taps.items():
        kernel[lag % nrows] += weight
    return np.fft.rfft(kernel)


def sirskernel_tree(kernels: dict, meta: dict) -> dict:
    """The ASDF tree of a SIRSKERNEL reference: ``meta`` and, per detector (lower case), its
    ``gamma`` and ``zeta`` coefficients as complex128 arrays of shape (4, n).

    Parameters
    ----------
    kernels : dict
        Detector name -> (gamma, zeta), each of shape (4, n) (one row per amplifier).
    meta : dict
        The reference's metadata (reftype SIRSKERNEL, instrument, pedigree...).
    """
    tree = {"meta": dict(meta)}
    for detector, (gamma, zeta) in kernels.items():
        tree[str(detector).lower()] = {"gamma": np.asarray(gamma, np.complex128),
                                       "zeta": np.asarray(zeta, np.complex128)}
    return tree


def write_sirskernel_reference(path, kernels: dict, instrument: str = "NIRCAM") -> Path:
    """Write a SIRSKERNEL reference.

    Parameters
    ----------
    path : str or Path
        The ``.asdf`` file to write (atomically).
    kernels : dict
        Detector name -> (gamma, zeta), each an array of shape (4, n) of coefficients (as from
        :func:`lagged_coefficients`, one row per amplifier).
    instrument : str
        INSTRUME of the reference.

    Returns
    -------
    Path
    """
    path = Path(path)
    meta = {"reftype": "SIRSKERNEL", "telescope": "JWST", "pedigree": "DUMMY",
            "author": "jwpipe simulator", "useafter": "2022-01-01T00:00:00",
            "description": "Simulated SIRS convolution kernels (chosen lags)",
            "instrument": {"name": instrument.upper()}}
    _save(sirskernel_tree(kernels, meta), path)
    return path
