"""The step framework: typed parameters, reference lookup, skip/save semantics, ramp blocks.

A step is a parameter dataclass (the only place its defaults live) plus ``process``. ``Step.run``
adds what every step shares: open the input, look up reference files, honour ``skip``, record
``meta.cal_step``, time the work, save if asked. Steps never modify their input: ``run`` hands
``process`` a copy.

Stage-1 steps subclass :class:`RampStep` and work on a :class:`RampBlock` (a block of
integrations) so the driver can stream an exposure through the whole ramp chain block by block.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import datamodels
from ..datamodels import DataModel, RampModel
from ..errors import ConfigError
from ..logs import get_logger, timed

__all__ = ["StepParams", "Step", "RampStep", "RampBlock", "BlockBuffers", "output_name",
           "intermediate_product", "parse_value", "exposure_shape", "NOT_APPLICABLE"]

NOT_APPLICABLE = "N/A"

log = get_logger("step")

# Product suffixes stripped from an input name before the step's own suffix is added.
KNOWN_SUFFIXES = (
    "uncal", "ramp", "rate", "rateints", "cal", "calints", "i2d", "s2d", "s3d", "x1d", "x1dints",
    "c1d", "crf", "crfints", "bsub", "bsubints", "dark", "trapsfilled", "fitopt", "psfstack",
    "psfalign", "psfsub", "ami-oi", "amimulti-oi", "amilg", "aminorm-oi", "phot", "whtlt",
    "segm", "cat", "mbsub", "flat",
)


def output_name(input_path, suffix: str, output_dir=None, ext: str = ".fits") -> Path:
    """``jw..._uncal.fits`` + ``rate`` -> ``jw..._rate.fits`` (in ``output_dir`` if given)."""
    path = Path(input_path)
    stem = path.name
    for end in (".fits.gz", ".fits", ".asdf", ".json"):
        if stem.endswith(end):
            stem = stem[: -len(end)]
            break
    head, sep, last = stem.rpartition("_")
    while sep and last in KNOWN_SUFFIXES + (suffix,):
        stem = head
        head, sep, last = stem.rpartition("_")
    folder = Path(output_dir) if output_dir else path.parent
    return folder / f"{stem}_{suffix}{ext}"


@dataclass
class StepParams:
    """Parameters every step has."""

    skip: bool = False
    save_results: bool = False
    output_dir: str | None = None
    output_file: str | None = None
    suffix: str | None = None


def parse_value(text: str, annotation, where: str):
    """Convert a cfg/CLI string to a parameter's declared type, naming ``where`` on failure."""
    kind = annotation if isinstance(annotation, type) else None
    args = typing.get_args(annotation) if kind is None else ()
    if kind is None and isinstance(annotation, str):
        kind = {"bool": bool, "int": int, "float": float, "str": str}.get(
            annotation.split("|")[0].strip(), str)
        if "None" in annotation and text.strip().lower() in ("none", ""):
            return None
    elif kind is None:
        if type(None) in args and text.strip().lower() in ("none", ""):
            return None
        kind = next((a for a in args if a is not type(None)), str)
    if not isinstance(text, str):
        return text
    value = text.strip()
    try:
        if kind is bool:
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a valid {kind.__name__}") from None
    return value


class Step:
    """Base class of every step.

    Class attributes
    ----------------
    name : str
        The step alias used in cfg files and on the command line (``"saturation"``).
    class_name : str
        The reference pipeline's class name (``"SaturationStep"``).
    cal_step : str or None
        Key under ``meta.cal_step`` recording the step's status.
    reference_types : tuple of str
        CRDS reference types the step needs; each gets an ``override_<type>`` parameter.
    Params : type
        The step's parameter dataclass (subclass of :class:`StepParams`).
    suffix : str
        Output suffix when the step's result is saved.
    missing_reference_level : int
        Log level of the note that an optional reference was not found (the step goes on
        without it).
    """

    name: ClassVar[str] = "step"
    class_name: ClassVar[str] = "Step"
    cal_step: ClassVar[str | None] = None
    reference_types: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type[StepParams]] = StepParams
    suffix: ClassVar[str | None] = None
    model_class: ClassVar[type[DataModel] | None] = None
    missing_reference_level: ClassVar[int] = logging.INFO

    def __init__(self, params: StepParams | None = None, *, overrides: dict | None = None,
                 crds_path=None, threads: int | None = None, **kwargs):
        self.params = params if params is not None else self.Params()
        self.threads = threads or env_threads()
        self.overrides: dict[str, str] = {}
        self.crds_path = crds_path
        for key, value in dict(overrides or {}).items():
            self.set_override(key, value)
        for key, value in kwargs.items():
            self.set_param(key, value)

    # -- parameters ------------------------------------------------------------------------------
    @classmethod
    def param_fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls.Params)}

    def set_param(self, key: str, value, where: str | None = None) -> None:
        """Set a parameter (or ``override_<reftype>``), converting strings to its type."""
        where = where or f"step {self.name}"
        if key.startswith("override_"):
            self.set_override(key[len("override_"):], value, where)
            return
        fields = self.param_fields()
        if key not in fields:
            known = ", ".join(sorted(fields) + [f"override_{r}" for r in self.reference_types])
            raise ConfigError(f"{where}: unknown parameter {key!r} for step {self.name}; "
                              f"known parameters: {known}")
        if isinstance(value, str):
            value = parse_value(value, fields[key].type, f"{where}: parameter {key}")
        setattr(self.params, key, value)

    def set_override(self, reftype: str, value, where: str | None = None) -> None:
        if reftype not in self.reference_types:
            raise ConfigError(f"{where or 'step ' + self.name}: step {self.name} uses no "
                              f"{reftype!r} reference (it uses: "
                              f"{', '.join(self.reference_types) or 'none'})")
        self.overrides[reftype] = value

    # -- references ------------------------------------------------------------------------------
    def get_reference(self, reftype: str, model: DataModel) -> str:
        """Path of the reference file of ``reftype`` for ``model``, or ``"N/A"``.

        Records the choice in ``meta.ref_file.<reftype>.name`` of ``model``.
        """
        from ..references import find_reference, reference_name_for_header

        override = self.overrides.get(reftype)
        path = find_reference(reftype, model.meta, override=override, crds_path=self.crds_path)
        record = NOT_APPLICABLE if path == NOT_APPLICABLE else reference_name_for_header(path)
        model.meta.set(f"ref_file.{reftype}.name", record)
        return path

    def get_references(self, model: DataModel) -> dict[str, str]:
        """Every reference the step uses; ``N/A`` for a type this run does not use (see
        :meth:`used_references`) and for an optional one that cannot be found."""
        from ..errors import ReferenceNotFoundError

        required = self.required_references()
        used = self.used_references(model)
        refs = {}
        for reftype in self.reference_types:
            if reftype not in used:
                refs[reftype] = NOT_APPLICABLE
                continue
            try:
                refs[reftype] = self.get_reference(reftype, model)
            except ReferenceNotFoundError:
                if reftype in required or reftype in self.overrides:
                    raise
                log.log(self.missing_reference_level,
                        "%s: no %s reference found; going on without it", self.name, reftype)
                refs[reftype] = NOT_APPLICABLE
        return refs

    def used_references(self, model: DataModel) -> tuple[str, ...]:
        """Reference types this run looks up (its parameters and exposure may need fewer than
        :attr:`reference_types`; the others are ``N/A`` without a lookup). Default: all."""
        return self.reference_types

    # -- running ---------------------------------------------------------------------------------
    def open_input(self, init) -> DataModel:
        if isinstance(init, DataModel):
            return init
        return datamodels.open(init, self.model_class)

    def run(self, init) -> DataModel:
        """Run the step on a model or file and return a new model (the input is untouched)."""
        model = self.open_input(init)
        if self.params.skip:
            result = shallow_copy(model)
            self.record_status(result, "SKIPPED")
            log.info("%s skipped", self.name)
            return result
        with timed(f"step {self.name}", log):
            result = shallow_copy(model)
            refs = self.get_references(result)
            missing = [r for r in self.required_references() if refs.get(r) == NOT_APPLICABLE]
            if missing:
                log.info("%s skipped: reference %s not applicable", self.name, ", ".join(missing))
                self.record_status(result, "SKIPPED")
                return result
            result = self.process(result, refs)
            if result.meta.get(f"cal_step.{self.cal_step}") is None and self.cal_step:
                self.record_status(result, "COMPLETE")
        if self.params.save_results:
            self.save(result, model)
        return result

    def required_references(self) -> tuple[str, ...]:
        """Reference types without which the step does not apply (N/A -> SKIPPED)."""
        return self.reference_types

    def process(self, model: DataModel, refs: dict[str, str]) -> DataModel:
        """Do the step's work on ``model`` (a private copy, which may be modified)."""
        raise NotImplementedError

    def record_status(self, model: DataModel, status: str) -> None:
        if self.cal_step:
            model.meta.set(f"cal_step.{self.cal_step}", status)

    def save(self, result: DataModel, source: DataModel) -> Path:
        if self.params.output_file:
            path = Path(self.params.output_file)
            if self.params.output_dir and not path.is_absolute():
                path = Path(self.params.output_dir) / path
        else:
            base = source.path or Path(f"{self.name}.fits")
            path = output_name(base, self.params.suffix or self.suffix or self.name,
                               self.params.output_dir)
        result.save(path)
        log.info("saved %s", path)
        return path


def intermediate_product(model: DataModel, data: np.ndarray) -> DataModel:
    """A diagnostic product holding ``data`` with a copy of ``model``'s metadata: an
    ``ImageModel``, ``CubeModel`` or ``RampModel`` for 2-, 3- or 4-D data (float32), as the
    reference pipeline's intermediate models (masks, fitted backgrounds, corrections)."""
    import copy as _copy

    cls = {2: datamodels.ImageModel, 3: datamodels.CubeModel, 4: RampModel}[data.ndim]
    product = cls()
    product.__dict__["_tree"] = _copy.deepcopy(model._tree)
    product.meta.model_type = cls.model_type
    product.data = data if data.dtype == np.float32 else data.astype(np.float32)
    return product


def shallow_copy(model: DataModel) -> DataModel:
    """A new model sharing ``model``'s arrays (copy-on-write by convention) with its own meta.

    Steps replace arrays rather than writing into shared ones, so the input stays untouched
    without copying gigabytes for every step.
    """
    import copy as _copy

    new = type(model).__new__(type(model))
    new.__dict__.update(model.__dict__)
    new.__dict__["_arrays"] = dict(model._arrays)
    new.__dict__["_tables"] = dict(model._tables)
    new.__dict__["_tree"] = _copy.deepcopy(model._tree)
    new.__dict__["extra_fits"] = {k: list(v) for k, v in model.extra_fits.items()}
    new.__dict__["_asdf_extra"] = dict(model._asdf_extra)
    return new


class BlockBuffers:
    """Block arrays reused from one block to the next (by the driver, and by a step for the
    arrays it makes).

    A block is one to a few hundred MB; a fresh array of that size is new memory the kernel has
    to map and zero page by page (a large share of a block's cost for a small subarray), so
    the next block goes into the previous block's arrays, unless anything (a step's state, the
    fit) still holds them or a view of them: then a new array is made.
    """

    def __init__(self):
        self._arrays: dict[str, np.ndarray] = {}

    def take(self, name: str, shape: tuple, dtype) -> np.ndarray:
        """A C-contiguous array of ``shape``/``dtype`` (contents undefined)."""
        array = self._arrays.pop(name, None)
        # References: the local name and getrefcount's argument; any other is a holder.
        if (array is not None and sys.getrefcount(array) <= 2 and array.dtype == dtype
                and array.shape[1:] == tuple(shape[1:]) and array.shape[0] >= shape[0]):
            self._arrays[name] = array
            return array if array.shape[0] == shape[0] else array[:shape[0]]
        array = np.empty(shape, dtype)
        self._arrays[name] = array
        return array


@dataclass
class RampBlock:
    """A block of integrations flowing through the stage-1 chain.

    Attributes
    ----------
    data : ndarray of shape (nb, ngroups, ny, nx), float32
        The ramps, owned by the block (steps modify it in place).
    groupdq : ndarray of shape (nb, ngroups, ny, nx), uint8
    pixeldq : ndarray of shape (ny, nx), uint32
        Shared by every block of the exposure (steps OR flags into it).
    int_start : int
        0-based index of the block's first integration in the exposure.
    nints : int
        Integrations in the whole exposure.
    meta : Node
        The exposure's metadata (steps may update it; it is the output product's meta).
    zeroframe : ndarray of shape (nb, ny, nx), float32, optional
    """

    data: np.ndarray
    groupdq: np.ndarray
    pixeldq: np.ndarray
    int_start: int
    nints: int
    meta: Any
    zeroframe: np.ndarray | None = None
    extras: dict = field(default_factory=dict)

    @property
    def int_stop(self) -> int:
        return self.int_start + self.data.shape[0]

    @classmethod
    def from_model(cls, model: RampModel) -> "RampBlock":
        """The whole exposure as one block (private copies of the model's arrays)."""
        data = np.array(model.data, dtype=np.float32, copy=True)
        zero = model.zeroframe if model.has("zeroframe") else None
        return cls(data=data, groupdq=np.array(model.groupdq, dtype=np.uint8, copy=True),
                   pixeldq=np.array(model.pixeldq, dtype=np.uint32, copy=True), int_start=0,
                   nints=data.shape[0], meta=model.meta,
                   zeroframe=None if zero is None else np.array(zero, np.float32, copy=True))

    def store(self, model: RampModel) -> None:
        model.data = self.data
        model.groupdq = self.groupdq
        model.pixeldq = self.pixeldq
        if self.zeroframe is not None:
            model.zeroframe = self.zeroframe


class RampStep(Step):
    """A stage-1 step that works on blocks of integrations.

    Subclasses implement ``prepare`` (read references once per exposure; return a state object)
    and ``process_block`` (correct one block in place). The stage-1 driver looks every reference
    up before reading any data, calls ``prepare`` when the first block reaches the step and
    ``release`` after the last block has passed it, so a one-block exposure holds one step's
    references at a time. A step that needs every integration at once sets
    ``needs_all_integrations = True`` and the driver gives it a single block.
    """

    model_class: ClassVar[type[DataModel] | None] = RampModel
    needs_all_integrations: ClassVar[bool] = False

    def prepare(self, model: RampModel, refs: dict[str, str]) -> Any:
        """Load what the step needs for this exposure (reference arrays cut to the subarray)."""
        return None

    def process_block(self, block: RampBlock, state: Any) -> None:
        raise NotImplementedError

    # A step whose correction is fitted to the whole exposure before any block is corrected
    # (emicorr) asks for passes over the blocks first: while ``scan_pending`` is true the driver
    # reads the blocks again, runs the steps before this one on them and hands them to
    # ``scan_block`` (which must not change them), then calls ``end_scan``.
    def scan_pending(self, state: Any) -> bool:
        """Whether the step wants (another) pass over the blocks before correcting any."""
        return False

    def scan_block(self, block: RampBlock, state: Any) -> bool:
        """Collect what the fit needs from one block; False when this pass needs no more."""
        raise NotImplementedError

    def end_scan(self, state: Any) -> None:
        """Called after each pass over the blocks."""

    def release(self, state: Any) -> Any:
        """Called once when the last block has passed this step; returns what ``finish`` needs.

        The stage-1 driver keeps what this returns until the end of the exposure; steps holding
        large reference arrays return a state without them, so those arrays do not stay
        resident while later steps (jump, ramp fitting) run. Default: keep all.
        """
        return state

    def finish(self, model: DataModel, state: Any) -> None:
        """Called once after the last block (record step metadata, close state)."""

    def open_input(self, init) -> DataModel:
        model = super().open_input(init)
        if isinstance(model, datamodels.Level1bModel):
            from ..pipelines.ramp_io import ramp_from_level1b

            model = ramp_from_level1b(model)
        return model

    def process(self, model: RampModel, refs: dict[str, str]) -> RampModel:
        from ..pipelines.ramp_io import check_not_multistripe

        check_not_multistripe(model)
        state = self.prepare(model, refs)
        block = RampBlock.from_model(model)
        while self.scan_pending(state):
            self.scan_block(block, state)
            self.end_scan(state)
        self.process_block(block, state)
        block.store(model)
        self.finish(model, state)
        return model


def exposure_shape(model) -> tuple[int, int, int, int]:
    """(nints, ngroups, ny, nx) of an exposure, from its data or, before data exist, its keywords.

    The stage-1 driver calls ``prepare`` with a product that holds no ramp (the ramp streams
    through in blocks); there the shape comes from NINTS (INTSTART/INTEND for segments), NGROUPS
    and SUBSIZE1/2.
    """
    shape = tuple(model.shape)
    if len(shape) == 4:
        return shape
    known = getattr(model, "exposure_shape", None)
    if known is not None:
        return tuple(known)
    meta = model.meta
    start, end = meta.get("exposure.integration_start"), meta.get("exposure.integration_end")
    nints = (end - start + 1) if (start and end) else meta.get("exposure.nints")
    values = (nints, meta.get("exposure.ngroups"), meta.get("subarray.ysize"),
              meta.get("subarray.xsize"))
    if any(v is None for v in values):
        raise ConfigError(f"{model.path or 'input'}: the exposure shape is unknown (no data and "
                          "no NINTS/NGROUPS/SUBSIZE1/SUBSIZE2 keywords)")
    return tuple(int(v) for v in values)


def env_threads() -> int:
    """Default thread count: ``JWPIPE_THREADS`` or 1."""
    try:
        return max(1, int(os.environ.get("JWPIPE_THREADS", "1")))
    except ValueError:
        return 1
