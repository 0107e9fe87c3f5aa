"""JWST products and reference files as data models (FITS + ASDF metadata extension).

``open(path)`` picks the model class from the file's DATAMODL keyword (or its layout); arrays are
memory-mapped and converted when first used; ``model.save(path)`` writes atomically. Extracted
spectra are in :mod:`.spectra`, ECSV catalogs in :mod:`.catalogs`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ProductTypeError
from .asn import Association, load_asn, write_asn
from .catalogs import catalog_meta, read_catalog, write_catalog
from .fits_io import LazyArray, open_hdulist
from .meta import Node
from .model import ArraySpec, DataModel
from .products import *  # noqa: F403
from .products import MODEL_CLASSES
from .products import __all__ as _products_all
from .spectra import Spectrum, empty_spec_table, spec_dtype

__all__ = ["open", "DataModel", "ArraySpec", "LazyArray", "Node", "Association", "load_asn",
           "write_asn", "MODEL_CLASSES", "Spectrum", "empty_spec_table", "spec_dtype",
           "write_catalog", "read_catalog", "catalog_meta", *_products_all]

# Layout fallbacks when DATAMODL is absent: (extension names present, SCI ndim) -> class.
_REFTYPE_CLASSES = {
    "GAIN": "GainModel", "READNOISE": "ReadnoiseModel", "MASK": "MaskModel",
    "SATURATION": "SaturationModel", "SUPERBIAS": "SuperBiasModel", "LINEARITY": "LinearityModel",
    "IPC": "IPCModel", "RESET": "ResetModel", "RSCD": "RSCDModel", "FLAT": "FlatModel",
    "AREA": "PixelAreaModel", "PHOTOM": "PhotomModel", "TRAPDENSITY": "TrapDensityModel",
    "TRAPPARS": "TrapParsModel", "PERSAT": "PersistenceSatModel",
    "PICTUREFRAME": "PictureFrameModel",
}


def model_class_for(path) -> type[DataModel]:
    """The model class a FITS file should open as (DATAMODL, then REFTYPE, then layout).

    Spectral products of other types (``SpecModel``, ``MRSMultiSpecModel``) open by layout.
    """
    hdul = open_hdulist(path)
    try:
        header = hdul[0].header
        name = str(header.get("DATAMODL", "")).strip()
        if name in MODEL_CLASSES:
            return MODEL_CLASSES[name]
        reftype = str(header.get("REFTYPE", "")).strip().upper()
        if reftype == "DARK":
            sci = hdul["SCI"].header if "SCI" in hdul else {}
            return MODEL_CLASSES["DarkMIRIModel" if sci.get("NAXIS", 0) == 4 else "DarkModel"]
        if reftype in _REFTYPE_CLASSES:
            return MODEL_CLASSES[_REFTYPE_CLASSES[reftype]]
        if "EXTRACT1D" in hdul:  # spectra; per-integration rows carry INT_NUM
            columns = getattr(hdul["EXTRACT1D"], "columns", None)
            tso = columns is not None and "INT_NUM" in columns.names
            return MODEL_CLASSES["TSOMultiSpecModel" if tso else "MultiSpecModel"]
        if "SCI" in hdul:
            sci = hdul["SCI"].header
            ndim, bitpix = sci.get("NAXIS", 0), sci.get("BITPIX")
            if ndim == 4:
                return MODEL_CLASSES["Level1bModel" if bitpix == 16 else "RampModel"]
            if ndim == 3:
                return MODEL_CLASSES["CubeModel"]
            if ndim == 2:
                return MODEL_CLASSES["ImageModel"]
        return DataModel
    finally:
        hdul.close()


def open(init, model_class: type[DataModel] | None = None) -> DataModel:  # noqa: A001
    """Open a FITS product or reference file as the right data model.

    Parameters
    ----------
    init : str, Path or DataModel
        The file (or an already open model, returned as is, or converted to ``model_class``).
    model_class : type, optional
        Force a class; a file whose DATAMODL names an incompatible product type raises
        :class:`~jwpipe.errors.ProductTypeError`.
    """
    if isinstance(init, DataModel):
        if model_class is None or isinstance(init, model_class):
            return init
        return model_class(init)
    path = Path(init)
    found = model_class_for(path)
    if model_class is None:
        return found(path)
    if found is not DataModel and not issubclass(found, model_class) and not _compatible(
            found, model_class):
        raise ProductTypeError(
            f"{path}: is a {found.model_type} (DATAMODL), but a {model_class.model_type} is "
            "needed here")
    return model_class(path)


def _compatible(found, wanted) -> bool:
    # An _uncal opens as a ramp; an IFU image as an image; a dark ramp as a ramp.
    pairs = {("Level1bModel", "RampModel"), ("IFUImageModel", "ImageModel"),
             ("ImageModel", "IFUImageModel"), ("DarkModel", "DarkMIRIModel"),
             ("DarkMIRIModel", "DarkModel")}
    return (found.model_type, wanted.model_type) in pairs
