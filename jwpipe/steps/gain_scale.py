"""gain_scale: rescale count rates taken with a non-standard gain setting.

When the exposure's gain factor is known (GAINFACT in the product, else in the GAIN reference's
header) SCI and ERR are multiplied by it and VAR_POISSON, VAR_RNOISE by its square; otherwise the
step is SKIPPED. Runs on the rate and rateints products (ImageModel, CubeModel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..logs import get_logger
from ._stage1_refs import NOT_APPLICABLE, open_ref
from .base import Step, StepParams

__all__ = ["gain_scaled", "GainScaleStep"]

log = get_logger("step.gain_scale")


def gain_scaled(arrays: dict, gain_factor: float) -> dict:
    """Rescaled copies of a product's arrays.

    Parameters
    ----------
    arrays : dict of str -> ndarray or None
        ``data``, ``err``, ``var_poisson``, ``var_rnoise`` (any shape, float32); missing or None
        entries are left out of the result.
    gain_factor : float

    Returns
    -------
    dict of str -> ndarray (float32)
        New arrays: data and err times ``gain_factor``, variances times its square.
    """
    g = np.float32(gain_factor)
    out = {}
    for name, value in arrays.items():
        if value is None or np.size(value) == 0:
            continue
        factor = g * g if name.startswith("var_") else g
        out[name] = np.multiply(np.asarray(value, dtype=np.float32), factor, dtype=np.float32)
    return out


@dataclass
class GainScaleParams(StepParams):
    pass


class GainScaleStep(Step):
    """Multiply rates by GAINFACT (SKIPPED when no gain factor is known)."""

    name = "gain_scale"
    class_name = "GainScaleStep"
    cal_step = "gain_scale"
    reference_types = ("gain",)
    Params = GainScaleParams

    def required_references(self):
        return ()

    def get_references(self, model):
        # The GAIN reference is only needed when the product does not carry GAINFACT.
        if model.meta.exposure.gain_factor is not None:
            return {"gain": NOT_APPLICABLE}
        return super().get_references(model)

    def process(self, model, refs):
        factor = model.meta.exposure.gain_factor
        if factor is None:
            path = refs.get("gain", NOT_APPLICABLE)
            if path not in (None, NOT_APPLICABLE):
                factor = open_ref(path, "gain").meta.exposure.gain_factor
        if factor is None:
            log.info("GAINFACT not found in the product or the gain reference; gain_scale "
                     "skipped")
            self.record_status(model, "SKIPPED")
            return model
        log.info("rescaling by %s", factor)
        arrays = {name: getattr(model, name) if model.has(name) else None
                  for name in ("data", "err", "var_poisson", "var_rnoise")
                  if name in type(model).arrays}
        for name, value in gain_scaled(arrays, float(factor)).items():
            setattr(model, name, value)
        model.meta.exposure.gain_factor = float(factor)
        self.record_status(model, "COMPLETE")
        return model
