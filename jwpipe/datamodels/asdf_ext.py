"""The ``ASDF`` FITS extension: the metadata tree (and gwcs WCS) serialised as ASDF bytes."""

from __future__ import annotations

import io

import numpy as np
from astropy.io import fits

__all__ = ["asdf_hdu"]

_NDARRAY_TAG = "tag:stsci.edu:asdf/core/ndarray-1.1.0"


def asdf_hdu(meta: dict, arrays: dict, extra: dict) -> fits.BinTableHDU:
    """Build the ASDF extension HDU.

    Arrays stored as FITS extensions are referenced (``source: fits:SCI,1``), not duplicated,
    as the JWST data-model convention requires.

    Parameters
    ----------
    meta : dict
        The metadata tree (``model.meta``), possibly holding a gwcs object under ``wcs``.
    arrays : dict
        Attribute name -> reference dict (source, datatype, byteorder, shape).
    extra : dict
        Other top-level tree entries to carry through.
    """
    import asdf
    from asdf.tagged import TaggedDict

    tree = dict(extra)
    tree["meta"] = meta
    for name, ref in arrays.items():
        tree[name] = TaggedDict(ref, _NDARRAY_TAG)
    buf = io.BytesIO()
    af = asdf.AsdfFile(tree)
    af.write_to(buf, all_array_storage="inline")
    raw = np.frombuffer(buf.getvalue(), dtype=np.uint8)
    col = fits.Column(name="ASDF_METADATA", format=f"{raw.size}B", array=raw[np.newaxis, :])
    return fits.BinTableHDU.from_columns([col], name="ASDF")
