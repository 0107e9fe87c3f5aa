"""Product and reference-file model classes (names as in the JWST data-model ecosystem)."""

from __future__ import annotations

from .model import ArraySpec as A
from .model import DataModel
from .spectra import MultiSpecModel, TSOMultiSpecModel

__all__ = [
    "Level1bModel", "RampModel", "ImageModel", "IFUImageModel", "CubeModel", "DarkRampModel",
    "RampFitOutputModel", "GainModel", "ReadnoiseModel", "MaskModel", "SaturationModel",
    "SuperBiasModel", "LinearityModel", "DarkModel", "DarkMIRIModel", "IPCModel", "ResetModel",
    "RSCDModel", "FlatModel", "PixelAreaModel", "PhotomModel", "TrapDensityModel",
    "TrapParsModel", "PersistenceSatModel", "PictureFrameModel", "TrapsFilledModel",
    "ReferenceModel",
    "MultiSpecModel", "TSOMultiSpecModel", "MODEL_CLASSES",
]

_SCIENCE_VARIANCES = {
    "err": A("ERR", "float32", (2,), default=True),
    "dq": A("DQ", "uint32", (2,), default=True),
    "var_poisson": A("VAR_POISSON", "float32", (2,)),
    "var_rnoise": A("VAR_RNOISE", "float32", (2,)),
    "var_flat": A("VAR_FLAT", "float32", (2,)),
}


class Level1bModel(DataModel):
    """Raw ``_uncal`` exposure: SCI uint16 (nints, ngroups, ny, nx), GROUP and INT_TIMES tables."""

    model_type = "Level1bModel"
    arrays = {
        "data": A("SCI", "uint16", (4,)),
        "zeroframe": A("ZEROFRAME", "uint16", (3,)),
        "refout": A("REFOUT", "uint16", (4,)),
    }
    tables = {"group": "GROUP", "int_times": "INT_TIMES"}


class RampModel(DataModel):
    """Corrected ramp (``_ramp``): SCI float32 4-D, PIXELDQ uint32 2-D, GROUPDQ uint8 4-D."""

    model_type = "RampModel"
    arrays = {
        "data": A("SCI", "float32", (4,)),
        "pixeldq": A("PIXELDQ", "uint32", (2,), default=True),
        "groupdq": A("GROUPDQ", "uint8", (4,), default=True),
        "zeroframe": A("ZEROFRAME", "float32", (3,)),
        "refout": A("REFOUT", "float32", (4,)),
        "average_dark_current": A("AVDRKCUR", "float32", (2,)),
    }
    tables = {"group": "GROUP", "int_times": "INT_TIMES"}


class DarkRampModel(RampModel):
    """Output of ``calwebb_dark`` (``_dark``): a corrected 4-D ramp."""

    model_type = "RampModel"


class ImageModel(DataModel):
    """A 2-D image (``_rate``, ``_cal``, ``_i2d``) with ERR, DQ and variance arrays."""

    model_type = "ImageModel"
    arrays = {
        "data": A("SCI", "float32", (2,)),
        **_SCIENCE_VARIANCES,
        "area": A("AREA", "float32", (2,)),
        "wht": A("WHT", "float32", (2,)),
        "con": A("CON", "int32", (2, 3)),
        "zeroframe": A("ZEROFRAME", "float32", (2,)),
    }


class IFUImageModel(ImageModel):
    """An IFU detector image (NIRSpec IFU, MIRI MRS)."""

    model_type = "IFUImageModel"
    arrays = {**ImageModel.arrays, "wavelength": A("WAVELENGTH", "float32", (2,))}


class CubeModel(DataModel):
    """A stack of 2-D images, one per integration (``_rateints``, ``_calints``)."""

    model_type = "CubeModel"
    arrays = {
        "data": A("SCI", "float32", (3,)),
        "err": A("ERR", "float32", (3,), default=True),
        "dq": A("DQ", "uint32", (3,), default=True),
        "var_poisson": A("VAR_POISSON", "float32", (3,)),
        "var_rnoise": A("VAR_RNOISE", "float32", (3,)),
        "var_flat": A("VAR_FLAT", "float32", (3,)),
        "area": A("AREA", "float32", (2,)),
        "wht": A("WHT", "float32", (3,)),
        "zeroframe": A("ZEROFRAME", "float32", (3,)),
    }
    tables = {"int_times": "INT_TIMES"}


class RampFitOutputModel(DataModel):
    """Optional ramp-fit product (``_fitopt``): per-segment fits, all float32.

    SLOPE, SIGSLOPE, VAR_POISSON, VAR_RNOISE, YINT, SIGYINT, WEIGHTS (nints, nseg, ny, nx);
    PEDESTAL (nints, ny, nx); CRMAG (nints, ncr, ny, nx). Definitions in
    :class:`jwpipe.ramp_fitting.OptionalResults`; the layout of stdatamodels'
    ``rampfitoutput.schema``.
    """

    model_type = "RampFitOutputModel"
    arrays = {
        "slope": A("SLOPE", "float32", (4,)), "sigslope": A("SIGSLOPE", "float32", (4,)),
        "var_poisson": A("VAR_POISSON", "float32", (4,)),
        "var_rnoise": A("VAR_RNOISE", "float32", (4,)),
        "yint": A("YINT", "float32", (4,)), "sigyint": A("SIGYINT", "float32", (4,)),
        "pedestal": A("PEDESTAL", "float32", (3,)), "weights": A("WEIGHTS", "float32", (4,)),
        "crmag": A("CRMAG", "float32", (4,)),
    }


# -- reference files -----------------------------------------------------------------------------

class ReferenceModel(DataModel):
    """Base of CRDS reference-file models; DQ_DEF maps DQ bits to flag names."""

    model_type = "ReferenceModel"
    arrays = {"data": A("SCI", "float32", (2, 3, 4)), "dq": A("DQ", "uint32", (2, 3, 4)),
              "err": A("ERR", "float32", (2, 3, 4))}
    tables = {"dq_def": "DQ_DEF"}


class GainModel(ReferenceModel):
    model_type = "GainModel"
    arrays = {"data": A("SCI", "float32", (2,))}


class ReadnoiseModel(ReferenceModel):
    model_type = "ReadnoiseModel"
    arrays = {"data": A("SCI", "float32", (2,))}


class PixelAreaModel(ReferenceModel):
    model_type = "PixelAreaModel"
    arrays = {"data": A("SCI", "float32", (2,))}


class MaskModel(ReferenceModel):
    model_type = "MaskModel"
    arrays = {"dq": A("DQ", "uint32", (2, 3))}


class SaturationModel(ReferenceModel):
    model_type = "SaturationModel"
    arrays = {"data": A("SCI", "float32", (2,)), "dq": A("DQ", "uint32", (2,))}


class SuperBiasModel(ReferenceModel):
    model_type = "SuperBiasModel"
    arrays = {"data": A("SCI", "float32", (2,)), "err": A("ERR", "float32", (2,)),
              "dq": A("DQ", "uint32", (2,))}


class LinearityModel(ReferenceModel):
    model_type = "LinearityModel"
    arrays = {"coeffs": A("COEFFS", "float32", (3,)),
              "inv_coeffs": A("INV_COEFFS", "float32", (3,)),
              "dq": A("DQ", "uint32", (2,))}


class DarkModel(ReferenceModel):
    """Near-IR dark: SCI (ngroups, ny, nx) frames."""

    model_type = "DarkModel"
    arrays = {"data": A("SCI", "float32", (3,)), "err": A("ERR", "float32", (3,)),
              "dq": A("DQ", "uint32", (2,)),
              "average_dark_current": A("AVDRKCUR", "float32", (2,))}


class DarkMIRIModel(ReferenceModel):
    """MIRI dark: SCI (nints, ngroups, ny, nx), one plane set per integration."""

    model_type = "DarkMIRIModel"
    arrays = {"data": A("SCI", "float32", (4,)), "err": A("ERR", "float32", (4,)),
              "dq": A("DQ", "uint32", (2, 4)),
              "average_dark_current": A("AVDRKCUR", "float32", (2,))}


class IPCModel(ReferenceModel):
    """IPC kernel: SCI 2-D small kernel or 4-D per-pixel kernel."""

    model_type = "IPCModel"
    arrays = {"data": A("SCI", "float32", (2, 4))}


class ResetModel(ReferenceModel):
    model_type = "ResetModel"
    arrays = {"data": A("SCI", "float32", (4,)), "err": A("ERR", "float32", (4,)),
              "dq": A("DQ", "uint32", (2,))}


class RSCDModel(ReferenceModel):
    model_type = "RSCDModel"
    arrays = {}
    tables = {"rscd_table": "RSCD_GROUP_SKIP", "rscd_old": "RSCD"}


class FlatModel(ReferenceModel):
    model_type = "FlatModel"
    arrays = {"data": A("SCI", "float32", (2,)), "err": A("ERR", "float32", (2,)),
              "dq": A("DQ", "uint32", (2,))}


class PhotomModel(ReferenceModel):
    """Photometric calibration table (PHOTOM extension)."""

    model_type = "PhotomModel"
    arrays = {}
    tables = {"phot_table": "PHOTOM"}


class TrapDensityModel(ReferenceModel):
    model_type = "TrapDensityModel"
    arrays = {"data": A("SCI", "float32", (2,)), "dq": A("DQ", "uint32", (2,))}


class TrapParsModel(ReferenceModel):
    model_type = "TrapParsModel"
    arrays = {}
    tables = {"trappars_table": "TRAPPARS"}


class PersistenceSatModel(ReferenceModel):
    model_type = "PersistenceSatModel"
    arrays = {"data": A("SCI", "float32", (2,)), "dq": A("DQ", "uint32", (2,))}


class PictureFrameModel(ReferenceModel):
    """NIRSpec thermal picture-frame shape: SCI float32 (2048, 2048), a full-frame rate image."""

    model_type = "PictureFrameModel"
    arrays = {"data": A("SCI", "float32", (2,))}


class TrapsFilledModel(DataModel):
    """Filled traps per trap family (``_trapsfilled``): SCI float32 (nfamilies, ny, nx)."""

    model_type = "TrapsFilledModel"
    arrays = {"data": A("SCI", "float32", (3,))}


MODEL_CLASSES: dict[str, type[DataModel]] = {
    cls.model_type: cls
    for cls in (Level1bModel, RampModel, ImageModel, IFUImageModel, CubeModel,
                RampFitOutputModel, GainModel, ReadnoiseModel, MaskModel, SaturationModel,
                SuperBiasModel, LinearityModel, DarkModel, DarkMIRIModel, IPCModel, ResetModel,
                RSCDModel, FlatModel, PixelAreaModel, PhotomModel, TrapDensityModel,
                TrapParsModel, PersistenceSatModel, PictureFrameModel, TrapsFilledModel,
                MultiSpecModel, TSOMultiSpecModel)
}
MODEL_CLASSES["DataModel"] = DataModel
