"""ramp_fit: slopes (``_rate``) and per-integration slopes (``_rateints``) from corrected ramps.

The fitting itself is :mod:`jwpipe.ramp_fitting` (compiled OLS with optimal weighting). This
module wraps it for the stage-1 stream: :meth:`RampFitStep.start` returns a fitter that takes
blocks of integrations as they leave the last ramp step and writes per-integration results into
the ``rateints`` arrays, so memory stays flat in NINTS. When the caller names the ``_rateints``
file to be written, those arrays are staged in it (:mod:`jwpipe.datamodels.staging`): each block
goes straight to its place in the product. Otherwise they are (possibly disk-backed) arrays,
copied into a product file only if one is saved. With ``save_opt``
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
import dataclasses
from dataclasses import dataclass

import numpy as np

from ..datamodels import CubeModel, ImageModel, RampFitOutputModel, RampModel
from ..datamodels.spill import allocate, release_pages, store_rows
from ..datamodels.staging import StagedProduct
from ..errors import ConfigError
from ..logs import get_logger
from ..ramp_fitting import (
    POWER_SNR_CHOICES,
    RESULT_DTYPES,
    IntegrationResults,
    RampFitAccumulator,
    usable_group_range,
)
from .base import RampBlock, Step, StepParams, output_name

log = get_logger("step")

__all__ = ["RampFitStep", "RampFitter"]

#: The CubeModel arrays holding each of the results (RESULT_DTYPES, its leading arrays, in order).
_CUBE_ARRAYS = ("data", "err", "dq", "var_poisson", "var_rnoise")
#: Bytes of DQ read back at once when pixel DQ that appeared late is added to earlier blocks.
_FIX_BYTES = 32 * 2**20


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
    rateints_path : path, optional
        The ``_rateints`` file that will be saved: its arrays are staged there and each block is
        written to its final place (see :meth:`finish`). The staged file is removed unless the
        ``_rateints`` model is saved to this path; :meth:`discard` removes it at once.

    Attributes
    ----------
    fitopt : RampFitOutputModel or None
        After :meth:`finish` with ``params.save_opt``: the per-segment results, SLOPE, SIGSLOPE,
        VAR_POISSON, VAR_RNOISE, YINT, SIGYINT, WEIGHTS float32 (nints, nseg, ny, nx), PEDESTAL
        float32 (nints, ny, nx), CRMAG float32 (nints, ncr, ny, nx).
    """

    def __init__(self, product: RampModel, gain, readnoise, params: RampFitParams, threads: int,
                 spill_dir=None, rateints_path=None):
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
        self.rateints_path = rateints_path
        self.staged: StagedProduct | None = None
        self.ints = None
        self._block_out = None
        self.pixeldq = None
        # Pixel DQ is ORed into each block's DQ as it is stored. Steps may still add pixel flags
        # in later blocks (jump, persistence...): _dq_late keeps (stop, pixels, bits) so that
        # integrations before ``stop`` get them at the end, as if ORed once after the last block.
        self._dq_stored = None
        self._dq_late: list[tuple[int, np.ndarray, np.ndarray]] = []
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
                self.ints = self._integration_arrays((nints, ny, nx))
        whole = block.int_start == 0 and block.int_stop == block.nints
        if whole and self.staged is None:
            # The whole exposure in one block: no running sums (five float64 images) are
            # needed, and one integration needs no _rateints arrays either.
            self.acc.fit_exposure(block.data, block.groupdq, block.zeroframe, out=self.ints,
                                  integrations=self.ints is not None)
            if self.ints is not None:
                np.bitwise_or(self.ints.dq, self.pixeldq, out=self.ints.dq)
                self._note_pixeldq(0)
            return
        # The kernel writes into one block-sized buffer, reused (its pages stay mapped), and
        # each block is then stored into the exposure arrays (staged in the product file, or
        # possibly disk-backed).
        if self._block_out is None or self._block_out.slope.shape[0] != nb:
            self._block_out = IntegrationResults.empty(nb, (ny, nx))
        out = self._block_out
        if whole:
            self.acc.fit_exposure(block.data, block.groupdq, block.zeroframe, out=out)
        else:
            self.acc.add_block(block.data, block.groupdq, block.zeroframe, out=out)
        np.bitwise_or(out.dq, self.pixeldq, out=out.dq)
        self._note_pixeldq(block.int_start)
        for name in RESULT_DTYPES:
            store_rows(getattr(self.ints, name), block.int_start, getattr(out, name))

    def _integration_arrays(self, shape) -> IntegrationResults:
        """Where the _rateints results go: staged in the product file if one was named."""
        if self.rateints_path is None:
            return IntegrationResults(*(allocate(shape, dtype, spill_dir=self.spill_dir)
                                        for dtype in RESULT_DTYPES.values()))
        # Header room is sized from the metadata as it is now (see staging.SPARE_PRIMARY).
        layout = CubeModel()
        _product_meta(self.product, layout, "CubeModel")
        self.staged = StagedProduct(layout, self.rateints_path, dict.fromkeys(_CUBE_ARRAYS, shape))
        return IntegrationResults(*(self.staged.arrays[name] for name in _CUBE_ARRAYS))

    def _note_pixeldq(self, start: int) -> None:
        """Record pixel DQ bits that are new since the blocks before ``start`` were stored."""
        if self._dq_stored is None:
            self._dq_stored = self.pixeldq.copy()
            return
        late = self.pixeldq & ~self._dq_stored
        if late.any():
            pixels = np.flatnonzero(late)
            self._dq_late.append((start, pixels, late.reshape(-1)[pixels]))
        self._dq_stored |= late

    def _add_late_pixeldq(self) -> None:
        """OR pixel DQ that appeared after a block was stored into that block's DQ."""
        self._note_pixeldq(self.ints.dq.shape[0])
        late, self._dq_late = self._dq_late, []
        if not late:
            return
        dq = self.ints.dq
        rows = max(1, _FIX_BYTES // max(1, int(np.prod(dq.shape[1:])) * dq.dtype.itemsize))
        for lo in range(0, max(stop for stop, _, _ in late), rows):
            hi = min(dq.shape[0], lo + rows)
            chunk = np.array(dq[lo:hi])
            flat = chunk.reshape(hi - lo, -1)
            for stop, pixels, bits in late:
                if stop > lo:
                    flat[:min(hi, stop) - lo, pixels] |= bits
            store_rows(dq, lo, chunk)
            if isinstance(dq, np.ndarray):
                release_pages(dq[lo:hi])  # a spilled array: drop the pages just read

    def discard(self) -> None:
        """Remove the staged ``_rateints`` file, unless saved (after an error, or when done)."""
        if self.staged is not None:
            self.staged.discard()

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
        self._add_late_pixeldq()
        ints = CubeModel()
        _product_meta(self.product, ints, "CubeModel")
        if self.staged is not None:
            self.staged.attach(ints)  # saving ints to rateints_path finishes the file in place
        else:
            for name, field in zip(_CUBE_ARRAYS, RESULT_DTYPES, strict=True):
                setattr(ints, name, getattr(self.ints, field))
        if self.product.has("int_times"):
            ints.int_times = self.product.int_times
        for model in (rate, ints):
            model.meta.cal_step.ramp_fit = "COMPLETE"
        return rate, ints

    def _fitopt_model(self) -> RampFitOutputModel:
        opt = self.acc.optional_results()
        model = RampFitOutputModel()
        _product_meta(self.product, model, "RampFitOutputModel")
        for field in dataclasses.fields(opt):  # the model's arrays have the same names
            setattr(model, field.name, getattr(opt, field.name))
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

    def start(self, product: RampModel, refs: dict[str, str], spill_dir=None,
              rateints_path=None) -> RampFitter:
        """A fitter for the stage-1 stream (references read and cut once); ``rateints_path``
        as in :class:`RampFitter`."""
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
                          spill_dir, rateints_path)

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
