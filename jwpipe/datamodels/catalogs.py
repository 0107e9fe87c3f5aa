"""Catalog products as ECSV tables: ``_cat.ecsv`` (sources), ``_phot.ecsv`` (TSO photometry),
``_whtlt.ecsv`` (white-light curves).

astropy.table writes and parses the ECSV format itself. This module adds what a product needs
around it: the file is written beside the target and renamed over it only when complete (a failed
write leaves nothing, an existing file is never half-replaced), and the table meta records the
product the catalog comes from, as the primary header of a FITS product does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputFileError, TableFormatError
from .fits_io import atomic_path

__all__ = ["catalog_meta", "write_catalog", "read_catalog"]

#: Table-meta key -> ``model.meta`` path, for the product a catalog is made from.
_PRODUCT_META = (
    ("source_file", "filename"), ("instrument", "instrument.name"),
    ("detector", "instrument.detector"), ("channel", "instrument.channel"),
    ("filter", "instrument.filter"), ("pupil", "instrument.pupil"),
    ("grating", "instrument.grating"), ("subarray", "subarray.name"),
    ("exposure_type", "exposure.type"), ("target_name", "target.catalog_name"),
    ("program", "observation.program_number"), ("observation", "observation.observation_number"),
)


def catalog_meta(model) -> dict:
    """Key metadata of a data model (instrument, detector, filter...) for a catalog's table meta.

    Only values the model has are included, as plain Python scalars.
    """
    meta = {}
    for key, path in _PRODUCT_META:
        value = model.meta.get(path)
        if value is not None:
            meta[key] = value.item() if isinstance(value, np.generic) else value
    return meta


def write_catalog(table, path, model=None, overwrite: bool = True) -> Path:
    """Write an astropy table as an ECSV catalog, atomically.

    Parameters
    ----------
    table : astropy.table.Table or QTable
        The catalog; it is not modified (its meta is copied into the file's).
    path : str or Path
        Output file (``*_cat.ecsv``, ``*_phot.ecsv``, ``*_whtlt.ecsv``).
    model : DataModel, optional
        The product the catalog was measured on; its :func:`catalog_meta` goes into the meta.
    overwrite : bool
        Replace an existing file (as a whole, by rename).

    Returns
    -------
    Path
        ``path``. Its table meta holds the table's own meta, ``filename`` (the catalog's name),
        ``jwpipe_version`` and the product's key metadata.
    """
    from astropy.table import Table

    from .. import __version__

    if not isinstance(table, Table):
        raise TypeError(f"write_catalog needs an astropy Table, got {type(table).__name__}")
    path = Path(path)
    out = type(table)(table, copy=False)  # a new table object over the same columns
    out.meta = {**(catalog_meta(model) if model is not None else {}), **table.meta,
                "filename": path.name, "jwpipe_version": __version__}
    with atomic_path(path, overwrite=overwrite) as tmp:
        out.write(tmp, format="ascii.ecsv", overwrite=True)
    return path


def read_catalog(path, required_columns=()):
    """Read an ECSV catalog.

    Parameters
    ----------
    path : str or Path
        The ``.ecsv`` file.
    required_columns : sequence of str
        Columns the caller needs; a missing one is a :class:`~jwpipe.errors.TableFormatError`.

    Returns
    -------
    astropy.table.QTable
        Columns with units come back as Quantity columns; ``meta`` as written.
    """
    from astropy.table import QTable

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        table = QTable.read(path, format="ascii.ecsv")
    except Exception as exc:  # astropy raises InconsistentTableError, ValueError, YAML errors...
        raise TableFormatError(f"{path}: not a readable ECSV table ({exc})") from exc
    for name in required_columns:
        if name not in table.colnames:
            raise TableFormatError(f"{path}: no column {name} (the catalog has "
                                   f"{', '.join(table.colnames) or 'no columns'})")
    return table
