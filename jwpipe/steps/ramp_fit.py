"""ramp_fit: slopes (``_rate``) and per-integration slopes (``_rateints``) from corrected ramps.

The fitting itself is :mod:`jwpipe.ramp_fitting` (compiled OLS with optimal weighting). This
module wraps it for the stage-1 stream: :meth:`RampFitStep.start` returns a fitter that takes
blocks of integrations as they leave the last ramp step and writes per-integration results into
the (possibly disk-backed) ``rateints`` arrays, so memory stays flat in NINTS. With ``save_opt``
the fitter also builds the per-segment ``_fitopt`` product (``RampFitOutputModel``; arrays
described in :class:`jwpipe.ramp_fitting.OptionalResults`), also block by block and disk-backed.

Deviation from the reference, on purpose: ``power_snr="stepwise"`` (default) picks the Fixsen
weighting power stepwise from the S/N of the lower powers' slopes instead of the ramp's end
points, which removes a bias near the S/N thresholds that becomes visible over many integrations
(see :mod:`jwpipe.ramp_fitting`); ``power_snr="endpoints"`` is the reference's choice, bit for
bit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..datamodels import CubeModel, ImageModel, RampFitOutputModel, RampModel
from ..datamodels.spill import allocate, store_rows
from ..errors import ConfigError
from ..logs import get_logger
from ..ramp_fitting import (
    POWER_SNR_CHOICES,
    IntegrationResults,
    RampFitAccumulator,
    usable_group_range,
)
from .base import RampBlock, Step, StepParams, output_name

log = get_logger("step")

__all__ = ["RampFitStep", "RampFitter"]

_RESULT_FIELDS = ("slope", "err", "dq", "var_poisson", "var_rnoise")


@dataclass
class RampFitParams(StepParams):
    algorithm: str = "OLS_C"
    weighting: str = "optimal"
    # "stepwise" (default): the weighting power from the S/N of the lower powers' slopes
    # (unbiased); "endpoints": from last - first group, as the reference (biased near the S/N
    # thresholds).
    power_snr: str = "stepwise"
    suppress_one_group: bool = True
    firstgroup: int | None = None
    lastgroup: int | None = None
    save_opt: bool = False
    maximum_cores: str = "1"


def _product_meta(source: RampModel, target, model_type: str) -> None:
    target.__dict__["_tree"] = copy.deepcopy(source._tree)
    target.__dict__["extra_fits"] = {k: list(v) for k, v in source.extra_fits.items()}
    target.__dict__["path"] = source.path
    target.meta.model_type = model_type
    target.meta.bunit_data = "DN/s"
    target.meta.set("bunit_err", "DN/s")


class RampFitter:
    """Stream blocks of integrations into a :class:`RampFitAccumulator`.

    Parameters
    ----------
    product : RampModel
        The exposure (metadata, and ``average_dark_current`` if the dark step set one).
    gain, readnoise : ndarray of shape (ny, nx), float32
        Cut to the science subarray.
    params : RampFitParams
    threads : int
    spill_dir : path, optional
        Where large result arrays spill to disk.

    Attributes
    ----------
    fitopt : RampFitOutputModel or None
        After :meth:`finish` with ``params.save_opt``: the per-segment results, SLOPE, SIGSLOPE,
        VAR_POISSON, VAR_RNOISE, YINT, SIGYINT, WEIGHTS float32 (nints, nseg, ny, nx), PEDESTAL
        float32 (nints, ny, nx), CRMAG float32 (nints, ncr, ny, nx).
    """

    def __init__(self, product: RampModel, gain, readnoise, params: RampFitParams, threads: int,
                 spill_dir=None):
        exposure = product.meta.exposure
        self.product = product
        self.params = params
        self.threads = threads
        self.gain, self.readnoise = gain, readnoise
        self.nints = int(product.meta.exposure.nints or 0)
        self.acc: RampFitAccumulator | None = None
        self.group_time = exposure.group_time
        self.frame_time = exposure.frame_time
        self.nframes = exposure.nframes or 1
        self.spill_dir = spill_dir
        self.ints = None
        self._block_out = None
        self.pixeldq = None
        self.fitopt: RampFitOutputModel | None = None

    def _group_range(self, block: RampBlock) -> tuple[int, int]:
        ngroups = block.data.shape[1]
        first = self.params.firstgroup or 0
        stop = ngroups if self.params.lastgroup is None else min(ngroups, self.params.lastgroup + 1)
        if str(self.product.meta.instrument.name or "").upper() == "MIRI":
            # Leading/trailing groups that are DO_NOT_USE everywhere are not part of the ramp.
            lo, hi = usable_group_range(block.groupdq)
            first, stop = max(first, lo), min(stop, hi)
        if not 0 <= first < stop:
            raise ConfigError(f"ramp_fit: no groups left to fit (firstgroup={first}, "
                              f"lastgroup={stop - 1})")
        return first, stop

    def add_block(self, block: RampBlock) -> None:
        nb, ngroups, ny, nx = block.data.shape
        if self.acc is None:
            nints = block.nints
            dark = None
            if self.product.has("average_dark_current"):
                dark = self.product.average_dark_current
            self.pixeldq = block.pixeldq
            self.acc = RampFitAccumulator(
                (ny, nx), self.gain, self.readnoise, self.group_time, self.frame_time,
                self.nframes, ngroups, pixeldq=block.pixeldq, avg_dark_current=dark,
                suppress_one_group=self.params.suppress_one_group,
                group_range=self._group_range(block), nthreads=self.threads,
                save_opt=self.params.save_opt,
                groupgap=self.product.meta.exposure.groupgap or 0,
                drop_frames1=self.product.meta.exposure.drop_frames1 or 0,
                spill_dir=self.spill_dir, power_snr=self.params.power_snr)
            if nints > 1:
                self.ints = IntegrationResults(*(
                    allocate((nints, ny, nx), dtype, spill_dir=self.spill_dir)
                    for dtype in (np.float32, np.float32, np.uint32, np.float32, np.float32)))
        if block.int_start == 0 and block.int_stop == block.nints:
            # The whole exposure in one block: no running sums (five float64 images) are
            # needed, and one integration needs no _rateints arrays either.
            self.acc.fit_exposure(block.data, block.groupdq, block.zeroframe, out=self.ints,
                                  integrations=self.ints is not None)
        else:
            # The kernel writes into one block-sized buffer, reused (its pages stay mapped), and
            # each block is then stored into the (possibly disk-backed) exposure arrays.
            if self._block_out is None or self._block_out.slope.shape[0] != nb:
                self._block_out = IntegrationResults.empty(nb, (ny, nx))
            out = self._block_out
            self.acc.add_block(block.data, block.groupdq, block.zeroframe, out=out)
            for name in _RESULT_FIELDS:
                store_rows(getattr(self.ints, name), block.int_start, getattr(out, name))

    def finish(self) -> tuple[ImageModel, CubeModel]:
        if self.acc is None:
            raise ConfigError("ramp_fit: the exposure has no integrations")
        self._block_out = None
        result = self.acc.finish()
        if self.params.save_opt:
            self.fitopt = self._fitopt_model()
        rate = ImageModel()
        _product_meta(self.product, rate, "ImageModel")
        rate.data, rate.err, rate.dq = result.slope, result.err, result.dq | self.pixeldq
        rate.var_poisson, rate.var_rnoise = result.var_poisson, result.var_rnoise
        if self.ints is None:  # one integration: no _rateints product
            rate.meta.cal_step.ramp_fit = "COMPLETE"
            return rate, None
        ints = CubeModel()
        _product_meta(self.product, ints, "CubeModel")
        ints.data, ints.err = self.ints.slope, self.ints.err
        np.bitwise_or(self.ints.dq, self.pixeldq, out=self.ints.dq)
        ints.dq = self.ints.dq
        ints.var_poisson, ints.var_rnoise = self.ints.var_poisson, self.ints.var_rnoise
        if self.product.has("int_times"):
            ints.int_times = self.product.int_times
        for model in (rate, ints):
            model.meta.cal_step.ramp_fit = "COMPLETE"
        return rate, ints

    def _fitopt_model(self) -> RampFitOutputModel:
        opt = self.acc.optional_results()
        model = RampFitOutputModel()
        _product_meta(self.product, model, "RampFitOutputModel")
        for name in ("slope", "sigslope", "var_poisson", "var_rnoise", "yint", "sigyint",
                     "pedestal", "weights", "crmag"):
            setattr(model, name, getattr(opt, name))
        model.meta.cal_step.ramp_fit = "COMPLETE"
        return model


class RampFitStep(Step):
    """Fit slopes to ramps (OLS with optimal weighting); returns the ``_rate`` model.

    The per-integration ``_rateints`` model of the last run is kept in ``self.rateints``, and with
    ``save_opt`` the per-segment ``_fitopt`` model (``RampFitOutputModel``) in ``self.fitopt``
    (written next to the rate product as ``<root>_fitopt.fits`` when results are saved).
    """

    rateints: CubeModel | None = None
    fitopt: RampFitOutputModel | None = None

    name = "ramp_fit"
    class_name = "RampFitStep"
    cal_step = "ramp_fit"
    reference_types = ("readnoise", "gain")
    Params = RampFitParams
    model_class = RampModel
    suffix = "rate"

    def start(self, product: RampModel, refs: dict[str, str], spill_dir=None) -> RampFitter:
        """A fitter for the stage-1 stream (references read and cut once)."""
        if self.params.algorithm.upper() not in ("OLS", "OLS_C"):
            raise ConfigError(f"ramp_fit: algorithm {self.params.algorithm!r} is not available "
                              "(jwpipe implements OLS_C)")
        if self.params.power_snr not in POWER_SNR_CHOICES:
            raise ConfigError(f"ramp_fit: power_snr must be one of "
                              f"{', '.join(POWER_SNR_CHOICES)}, got {self.params.power_snr!r}")
        from ..references import cut_to_subarray, open_reference

        arrays = {}
        for reftype in ("gain", "readnoise"):
            ref = open_reference(refs[reftype], reftype)
            arrays[reftype] = np.asarray(
                cut_to_subarray(ref.data, ref.meta, product.meta, name=refs[reftype]), np.float32)
            if reftype == "gain" and ref.meta.exposure.gain_factor:
                product.meta.exposure.gain_factor = ref.meta.exposure.gain_factor
        return RampFitter(product, arrays["gain"], arrays["readnoise"], self.params, self.threads,
                          spill_dir)

    def open_input(self, init):
        model = super().open_input(init)
        if not isinstance(model, RampModel):
            from ..pipelines.ramp_io import ramp_from_level1b

            model = ramp_from_level1b(model)
        return model

    def process(self, model: RampModel, refs: dict[str, str]) -> ImageModel:
        fitter = self.start(model, refs)
        block = RampBlock(np.asarray(model.data, np.float32), np.asarray(model.groupdq, np.uint8),
                          np.asarray(model.pixeldq, np.uint32), 0, model.shape[0], model.meta,
                          model.zeroframe if model.has("zeroframe") else None)
        fitter.add_block(block)
        rate, self.rateints = fitter.finish()
        self.fitopt = fitter.fitopt
        return rate

    def save(self, result, source):
        path = super().save(result, source)
        if self.fitopt is not None:
            opt_path = output_name(source.path or path, "fitopt",
                                   self.params.output_dir or path.parent)
            self.fitopt.save(opt_path)
            log.info("saved %s", opt_path)
        return path
