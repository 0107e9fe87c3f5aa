"""Steps by alias. Each lives in ``jwpipe/steps/<alias>.py`` as an array-level function plus a
thin :class:`~jwpipe.steps.base.Step` subclass; this registry imports them on demand."""

from __future__ import annotations

import importlib

from ..errors import StepNotImplementedError
from .base import RampBlock, RampStep, Step, StepParams

__all__ = ["Step", "RampStep", "RampBlock", "StepParams", "get_step_class", "KNOWN_STEPS",
           "implemented_steps"]

#: Every step alias a pipeline configuration may name, with the module:class implementing it.
#: ``None`` marks steps jwpipe does not implement yet.
KNOWN_STEPS: dict[str, str | None] = {
    # stage 1
    "group_scale": "group_scale:GroupScaleStep",
    "dq_init": "dq_init:DQInitStep",
    "emicorr": "emicorr:EmiCorrStep",
    "saturation": "saturation:SaturationStep",
    "ipc": "ipc:IPCStep",
    "superbias": "superbias:SuperBiasStep",
    "refpix": "refpix:RefPixStep",
    "firstframe": "firstframe:FirstFrameStep",
    "lastframe": "lastframe:LastFrameStep",
    "reset": "reset:ResetStep",
    "linearity": "linearity:LinearityStep",
    "rscd": "rscd:RscdStep",
    "dark_current": "dark_current:DarkCurrentStep",
    "persistence": "persistence:PersistenceStep",
    "charge_migration": "charge_migration:ChargeMigrationStep",
    "jump": "jump:JumpStep",
    "picture_frame": "picture_frame:PictureFrameStep",
    "clean_flicker_noise": "clean_flicker_noise:CleanFlickerNoiseStep",
    "ramp_fit": "ramp_fit:RampFitStep",
    "gain_scale": "gain_scale:GainScaleStep",
    # stage 2
    "bkg_subtract": None, "background": None, "assign_wcs": None, "flat_field": None,
    "photom": None, "resample": None, "imprint_subtract": None, "imprint": None,
    "msa_flagging": None, "msaflagopen": None, "extract_2d": None, "srctype": None,
    "straylight": None, "fringe": None, "pathloss": None, "barshadow": None,
    "resample_spec": None, "cube_build": None, "extract_1d": None, "wavecorr": None,
    "master_background_mos": None, "wfss_contam": None, "residual_fringe": None,
    "pixel_replace": None, "badpix_selfcal": None, "adaptive_trace_model": None,
    "targ_centroid": None,
    # stage 3
    "assign_mtwcs": None, "tweakreg": None, "skymatch": None, "outlier_detection": None,
    "source_catalog": None, "master_background": None, "mrs_imatch": None, "combine_1d": None,
    "spectral_leak": None, "ami_analyze": None, "ami_average": None, "ami_normalize": None,
    "stack_refs": None, "align_refs": None, "klip": None, "tso_photometry": None,
    "white_light": None,
}


def _module_exists(target: str) -> bool:
    module = target.split(":")[0]
    return importlib.util.find_spec(f"{__name__}.{module}") is not None


def implemented_steps() -> list[str]:
    """Aliases whose implementation is present in this build."""
    return [name for name, target in KNOWN_STEPS.items() if target and _module_exists(target)]


def get_step_class(name: str) -> type[Step]:
    """The Step class for alias ``name``.

    Raises
    ------
    StepNotImplementedError
        If jwpipe knows the step but does not implement it yet.
    KeyError
        If the alias is unknown.
    """
    if name not in KNOWN_STEPS:
        raise KeyError(name)
    target = KNOWN_STEPS[name]
    if not target or not _module_exists(target):
        raise StepNotImplementedError(f"step {name!r} is not implemented in jwpipe yet")
    module, cls = target.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)
