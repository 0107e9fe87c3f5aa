"""The driver: reads a pipeline configuration (``cfg/calwebb_<alias>.cfg``), builds its steps and
runs them in the configured order.

Configuration format (INI)::

    [pipeline]
    class = Detector1Pipeline          ; the pipeline class
    save_calibrated_ramp = false       ; pipeline-level overrides (never defaults)

    [order]
    default = group_scale, dq_init, ...   ; step order
    miri = group_scale, dq_init, ...      ; instrument-specific order (by INSTRUME, lower case)

    [steps.ipc]
    skip = true                        ; per-step overrides of the step's dataclass defaults

Defaults live only in the parameter dataclasses; unknown sections, keys, steps and parameters
are rejected with a message naming the file.

Two flows: ``ramp`` (stage 1) streams blocks of integrations from the raw file through every ramp
step and into ramp fitting, so memory stays flat in NINTS; ``sequence`` runs steps one after the
other on whole products.
"""

from __future__ import annotations

import configparser
import dataclasses
import importlib.resources
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import datamodels
from .datamodels import DataModel, Level1bModel, RampModel
from .errors import (
    ConfigError,
    DataShapeError,
    InputFileError,
    ProductTypeError,
    StepNotImplementedError,
)
from .logs import Progress, get_logger, peak_rss_mb, timed
from .steps import KNOWN_STEPS, get_step_class
from .steps.base import (
    NOT_APPLICABLE,
    BlockBuffers,
    RampBlock,
    RampStep,
    env_threads,
    output_name,
    parse_value,
)

__all__ = ["PIPELINE_ALIASES", "PipelineConfig", "find_config", "load_config", "build_pipeline",
           "execute", "run", "config_dir"]

log = get_logger("driver")

#: Command-line aliases -> configuration files (the seed's table).
PIPELINE_ALIASES = {
    "detector1": "calwebb_detector1.cfg", "tso1": "calwebb_tso1.cfg", "dark": "calwebb_dark.cfg",
    "image2": "calwebb_image2.cfg", "spec2": "calwebb_spec2.cfg", "image3": "calwebb_image3.cfg",
    "spec3": "calwebb_spec3.cfg", "ami3": "calwebb_ami3.cfg", "coron3": "calwebb_coron3.cfg",
    "tso3": "calwebb_tso3.cfg",
}


def config_dir() -> Path:
    """Folder holding the shipped configurations (installed as ``jwpipe/cfg``)."""
    installed = importlib.resources.files("jwpipe") / "cfg"
    if isinstance(installed, Path) and installed.is_dir():
        return installed
    try:  # editable installs map the folder through a custom Traversable
        for entry in installed.iterdir():
            if Path(str(entry)).is_file():
                return Path(str(entry)).parent
    except (OSError, AttributeError):
        pass
    return Path(__file__).resolve().parent.parent / "cfg"


def find_config(name) -> Path:
    """Resolve a pipeline alias (``detector1``), a cfg name or a path to a cfg file."""
    text = str(name)
    candidates = []
    if text in PIPELINE_ALIASES:
        candidates.append(config_dir() / PIPELINE_ALIASES[text])
    elif text.startswith("calwebb_"):
        candidates.append(config_dir() / (text if text.endswith(".cfg") else text + ".cfg"))
    candidates.append(Path(text))
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f"unknown pipeline {text!r}: give an alias "
                      f"({', '.join(PIPELINE_ALIASES)}) or a .cfg file")


@dataclass
class PipelineConfig:
    """A parsed configuration file."""

    path: Path
    class_name: str
    pipeline_params: dict[str, str] = field(default_factory=dict)
    orders: dict[str, list[str]] = field(default_factory=dict)
    step_params: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def all_steps(self) -> list[str]:
        seen: dict[str, None] = {}
        for order in self.orders.values():
            seen.update(dict.fromkeys(order))
        return list(seen)


def load_config(path) -> PipelineConfig:
    """Parse and check a configuration file (syntax, known steps, known sections)."""
    path = Path(path)
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None)
    parser.optionxform = str  # keep parameter names as written
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration ({exc.strerror or exc})") from exc
    except configparser.Error as exc:
        raise ConfigError(f"{path}: not a valid configuration file ({exc})") from exc
    if "pipeline" not in parser or "class" not in parser["pipeline"]:
        raise ConfigError(f"{path}: needs a [pipeline] section with a 'class' key")
    config = PipelineConfig(path, parser["pipeline"]["class"].strip())
    config.pipeline_params = {k: v for k, v in parser["pipeline"].items() if k != "class"}
    if "order" not in parser or "default" not in parser["order"]:
        raise ConfigError(f"{path}: needs an [order] section with a 'default' step list")
    for key, value in parser["order"].items():
        steps = [s.strip() for s in value.replace("\n", ",").split(",") if s.strip()]
        unknown = [s for s in steps if s not in KNOWN_STEPS]
        if unknown:
            raise ConfigError(f"{path}: [order] {key} names unknown step(s) {', '.join(unknown)}")
        config.orders[key.lower()] = steps
    for section in parser.sections():
        if section in ("pipeline", "order"):
            continue
        if not section.startswith("steps."):
            raise ConfigError(f"{path}: unknown section [{section}] (expected [pipeline], "
                              "[order] or [steps.<step>])")
        alias = section[len("steps."):]
        if alias not in config.all_steps:
            raise ConfigError(f"{path}: [{section}] configures a step that is not in [order]")
        config.step_params[alias] = dict(parser[section].items())
    return config


def build_pipeline(cfg, *, pipeline=None, steps: dict | None = None,
                   overrides: dict | None = None, crds_path=None, threads: int | None = None,
                   **pipeline_options):
    """Build (or fill in) a pipeline object from a configuration and user overrides.

    Parameters
    ----------
    cfg : str, Path or PipelineConfig
        Alias, cfg file or parsed configuration.
    pipeline : Pipeline, optional
        An instance to fill in (used by ``Pipeline.__init__``); otherwise one is created.
    steps : dict, optional
        ``{alias: {param: value}}`` user overrides; they win over the cfg file.
    overrides : dict, optional
        ``{reftype: path or "N/A"}`` applied to every step that uses the reference type.
    crds_path : path, optional
        Local CRDS cache (default: the ``CRDS_PATH`` environment variable).
    threads : int, optional
        Threads for compiled kernels.
    **pipeline_options
        Pipeline-level parameters (``save_calibrated_ramp``, ``output_dir``...).
    """
    from .pipelines import PIPELINE_CLASSES

    config = cfg if isinstance(cfg, PipelineConfig) else load_config(find_config(cfg))
    cls = PIPELINE_CLASSES.get(config.class_name)
    if cls is None:
        raise ConfigError(f"{config.path}: unknown pipeline class {config.class_name!r} "
                          f"(known: {', '.join(sorted(PIPELINE_CLASSES))})")
    if pipeline is None:
        pipeline = cls.__new__(cls)
    elif not isinstance(pipeline, cls):
        raise ConfigError(f"{config.path}: configures a {config.class_name}, not a "
                          f"{type(pipeline).__name__}")
    pipeline.config = config
    pipeline.params = cls.Params()
    fields = {f.name: f for f in dataclasses.fields(cls.Params)}
    for source, values in (("cfg", config.pipeline_params), ("option", pipeline_options)):
        for key, value in values.items():
            if key not in fields:
                raise ConfigError(f"{config.path if source == 'cfg' else 'pipeline option'}: "
                                  f"unknown parameter {key!r} for {config.class_name} (known: "
                                  f"{', '.join(fields)})")
            if isinstance(value, str):
                value = parse_value(value, fields[key].type, f"{config.path}: {key}")
            setattr(pipeline.params, key, value)
    steps = {k: dict(v) for k, v in (steps or {}).items()}
    unknown = [alias for alias in steps if alias not in config.all_steps]
    if unknown:
        raise ConfigError(f"{config.class_name} has no step(s) {', '.join(unknown)} (its steps: "
                          f"{', '.join(config.all_steps)})")
    pipeline.steps = {}
    pipeline.missing_steps = []
    overrides = dict(overrides or {})
    used_reftypes: set[str] = set()
    for alias in config.all_steps:
        try:
            step_cls = get_step_class(alias)
        except StepNotImplementedError:
            pipeline.missing_steps.append(alias)
            continue
        step = step_cls(crds_path=crds_path, threads=threads)
        for key, value in config.step_params.get(alias, {}).items():
            step.set_param(key, value, where=f"{config.path} [steps.{alias}]")
        for key, value in steps.get(alias, {}).items():
            step.set_param(key, value, where=f"--steps.{alias}.{key}")
        for reftype, value in overrides.items():
            if reftype in step.reference_types and reftype not in step.overrides:
                step.set_override(reftype, value)
                used_reftypes.add(reftype)
        pipeline.steps[alias] = step
    unused = set(overrides) - used_reftypes
    if unused and not pipeline.missing_steps:
        raise ConfigError(f"--override: no step of {config.class_name} uses reference type(s) "
                          f"{', '.join(sorted(unused))}")
    for step in pipeline.steps.values():
        if step.params.output_dir is None:
            step.params.output_dir = pipeline.params.output_dir
    pipeline.crds_path = crds_path
    pipeline.threads = threads
    return pipeline


def step_order(pipeline, meta) -> list[str]:
    """The configured order for this exposure's instrument (``[order] miri`` for MIRI...)."""
    instrument = str(meta.get("instrument.name") or "").lower()
    return pipeline.config.orders.get(instrument, pipeline.config.orders["default"])


def require_implemented(pipeline) -> None:
    """Raise if the pipeline would run a step jwpipe does not implement yet."""
    active = [a for a in pipeline.missing_steps
              if str(pipeline.config.step_params.get(a, {}).get("skip", "")).lower() != "true"]
    if active:
        raise StepNotImplementedError(
            f"{pipeline.config.class_name} ({pipeline.config.path.name}) cannot run yet: jwpipe "
            f"does not implement step(s) {', '.join(active)}")


def execute(pipeline, init):
    """Run ``pipeline`` on one input and return its final product."""
    require_implemented(pipeline)
    name = type(pipeline).__name__
    with timed(f"{name} on {Path(str(getattr(init, 'path', init) or '')).name or 'model'}", log):
        if pipeline.flow == "ramp":
            return run_ramp_chain(pipeline, init)
        return run_sequence(pipeline, init)


# -- the sequential flow -----------------------------------------------------------------------

def run_sequence(pipeline, init):
    """Run the configured steps in order on a whole product."""
    model = datamodels.open(init) if not isinstance(init, DataModel) else init
    source = model
    for alias in step_order(pipeline, model.meta):
        model = pipeline.steps[alias].run(model)
    if pipeline.params.save_results:
        path = output_name(source.path or "jwpipe_product.fits", pipeline.final_suffix,
                           pipeline.params.output_dir or ".")
        model.save(path)
        log.info("wrote %s", path)
    return model


# -- the stage-1 streaming flow ----------------------------------------------------------------

def _open_raw(init):
    if isinstance(init, DataModel):
        model = init
    else:
        cls = datamodels.model_class_for(init)
        if cls not in (Level1bModel, RampModel):
            raise ProductTypeError(
                f"{init}: is a {cls.model_type}; stage 1 needs a raw exposure (_uncal, "
                "Level1bModel) or a ramp (RampModel)")
        model = cls(init)
    if not isinstance(model, (Level1bModel, RampModel)):
        raise ProductTypeError(f"{getattr(model, 'path', None) or type(model).__name__}: stage 1 "
                               "needs a raw exposure (Level1bModel) or a RampModel")
    from .pipelines.ramp_io import check_level1b

    check_level1b(model)
    return model


#: State of a stage-1 step whose references are not read yet (no block has reached it).
_UNPREPARED = object()


def run_ramp_chain(pipeline, init):
    """Stream an exposure block by block through the ramp steps and into ramp fitting.

    Returns the rate product (``ImageModel``) for Detector1, the corrected ramp for Dark.
    """
    staged = []  # what holds a staged _rateints file: the fitter, then its StagedProduct
    try:
        return _stream_ramp_chain(pipeline, init, staged)
    finally:
        # A staged product not saved by now (an error, or a step that replaced its arrays) is
        # dropped here rather than whenever the garbage collector gets to it.
        for fitter in staged:
            fitter.discard()


def _scan_passes(active: list, product, read, nints: int, per_block: int, frame: tuple,
                 step_seconds: dict) -> None:
    """The passes over the blocks that a step fitting the whole exposure asks for before the
    main pass (see ``RampStep.scan_pending``): each block read again goes through the steps
    before that one, whose corrections it needs, then to its ``scan_block``."""
    for k, entry in enumerate(active):
        step = entry[0]
        if type(step).scan_pending is RampStep.scan_pending:
            continue
        for earlier in active[:k + 1]:
            if earlier[2] is _UNPREPARED:
                with timed(f"prepare {earlier[0].name}", log, level=10):
                    earlier[2] = earlier[0].prepare(product, earlier[1])
        passes = 0
        while step.scan_pending(entry[2]):
            t0 = time.perf_counter()
            pixeldq = np.zeros(frame, np.uint32)  # the main pass builds the product's own
            for start in range(0, nints, per_block):
                block = read(start, min(nints, start + per_block), pixeldq)
                for earlier in active[:k]:
                    earlier[0].process_block(block, earlier[2])
                more = step.scan_block(block, entry[2])
                block = None
                if not more:
                    break
            step.end_scan(entry[2])
            passes += 1
            step_seconds[step.name] += time.perf_counter() - t0
        if passes:
            log.info("%s: %d pass(es) over the exposure before correcting it", step.name,
                     passes)


def _stream_ramp_chain(pipeline, init, staged: list):
    from .datamodels.spill import allocate, release_pages
    from .pipelines.ramp_io import block_size_for, read_block

    raw = _open_raw(init)
    product = RampModel()
    product.__dict__["_tree"] = __import__("copy").deepcopy(raw._tree)
    product.__dict__["extra_fits"] = {k: list(v) for k, v in raw.extra_fits.items()}
    product.__dict__["path"] = raw.path
    product.meta.model_type = "RampModel"
    for table in ("group", "int_times"):
        if raw.has(table):
            setattr(product, table, getattr(raw, table))
    nints, ngroups, ny, nx = raw.shape
    product.exposure_shape = raw.shape  # prepare() runs before any ramp data are read
    order = step_order(pipeline, raw.meta)
    split = order.index("ramp_fit") if "ramp_fit" in order else len(order)
    ramp_aliases, post_aliases = order[:split], order[split:]

    # Every reference is looked up now (a missing one stops the run before any data are read);
    # each step reads its references when the first block reaches it and drops them after the
    # last block (``release``), so a one-block exposure never holds every step's references
    # at once.
    active: list[list] = []  # [step, references, state or _UNPREPARED]
    for alias in ramp_aliases:
        step = pipeline.steps[alias]
        if step.params.skip:
            step.record_status(product, "SKIPPED")
            continue
        refs = step.get_references(product)
        if any(refs.get(r) == NOT_APPLICABLE for r in step.required_references()):
            log.info("%s skipped: reference not applicable", alias)
            step.record_status(product, "SKIPPED")
            continue
        active.append([step, refs, _UNPREPARED])

    fit_step = pipeline.steps.get("ramp_fit") if post_aliases else None
    if fit_step is not None and fit_step.params.skip:
        fit_step = None
    fit_refs = fit_step.get_references(product) if fit_step is not None else None
    fitter = None
    keep_ramp = pipeline.flow == "ramp" and (
        getattr(pipeline.params, "save_calibrated_ramp", False) or fit_step is None)

    out_dir = Path(pipeline.params.output_dir or ".")
    source = raw.path or Path("jwpipe_exposure_uncal.fits")
    save = pipeline.params.save_results
    # A _rateints product to be saved is written in place as the blocks are fitted.
    rateints_path = output_name(source, "rateints", out_dir) if save and nints > 1 else None

    whole = [step.name for step, _, _ in active if step.needs_all_integrations]
    per_block = nints if whole else (pipeline.params.integrations_per_block
                                     or block_size_for(raw.shape))
    if whole and nints > 1:
        log.info("%s needs every integration at once: one block of %d integrations (memory "
                 "grows with NINTS)", ", ".join(whole), nints)
    pixeldq = out_pixeldq = np.zeros((ny, nx), np.uint32)
    buffers = BlockBuffers()
    step_seconds = {step.name: 0.0 for step, _, _ in active}
    fit_seconds = 0.0

    def read(start: int, stop: int, pixeldq: np.ndarray) -> RampBlock:
        zero = None
        if raw.has("zeroframe"):
            zero = np.asarray(raw.lazy("zeroframe")[start:stop], dtype=np.float32)
        shape = (stop - start, ngroups, ny, nx)
        data = read_block(raw, start, stop, nthreads=pipeline.threads or env_threads(),
                          out=buffers.take("data", shape, np.float32))
        if not isinstance(raw, Level1bModel) and raw.has("groupdq"):
            groupdq = read_block(raw, start, stop, "groupdq", np.uint8,
                                 out=buffers.take("groupdq", shape, np.uint8))
        else:
            groupdq = buffers.take("groupdq", shape, np.uint8)
            groupdq.fill(0)
        if not isinstance(raw, Level1bModel) and start == 0:
            pixeldq |= raw.pixeldq
        return RampBlock(data, groupdq, pixeldq, start, nints, product.meta, zero)

    _scan_passes(active, product, read, nints, per_block, (ny, nx), step_seconds)
    with Progress(nints, "integrations") as progress:
        for start in range(0, nints, per_block):
            stop = min(nints, start + per_block)
            block = read(start, stop, pixeldq)
            last = stop == nints
            if last:  # no next block: the arrays go with the block (jump replaces its group DQ)
                buffers = None
            for entry in active:
                step = entry[0]
                t0 = time.perf_counter()
                if entry[2] is _UNPREPARED:
                    with timed(f"prepare {step.name}", log, level=10):
                        entry[2] = step.prepare(product, entry[1])
                step.process_block(block, entry[2])
                if block.data.shape[1:] != product.exposure_shape[1:]:
                    # IRS2 refpix strips the interleaved reference pixels: the steps after it
                    # (prepared when this block reaches them) see the new frames.
                    product.exposure_shape = (nints,) + block.data.shape[1:]
                if last:  # later steps and ramp fitting run without this step's references
                    entry[2] = step.release(entry[2])
                step_seconds[step.name] += time.perf_counter() - t0
            # PIXELDQ is shared by the blocks; the product's is the one the last step handed on
            # (IRS2 refpix strips it: the next block starts again from the raw-layout plane).
            out_pixeldq = block.pixeldq
            if keep_ramp:
                if product.data is None:  # the whole corrected ramp is a product: long
                    # exposures spill to disk
                    product.data = allocate(product.exposure_shape, np.float32,
                                            spill_dir=pipeline.params.output_dir)
                    product.groupdq = allocate(product.exposure_shape, np.uint8,
                                               spill_dir=pipeline.params.output_dir)
                product.data[start:stop] = block.data
                product.groupdq[start:stop] = block.groupdq
            if fit_step is not None:
                t0 = time.perf_counter()
                if fitter is None:
                    fitter = fit_step.start(product, fit_refs,
                                            spill_dir=pipeline.params.output_dir,
                                            rateints_path=rateints_path)
                    staged.append(fitter)
                fitter.add_block(block)
                fit_seconds += time.perf_counter() - t0
            release_pages()  # spilled _rateints/_ramp pages this block wrote leave our memory
            progress.update(stop - start)
            # Drop this block before reading the next one (and before the fit's finish and the
            # writes), so at most one block is ever resident.
            block = None
    buffers = None
    product.pixeldq = out_pixeldq
    for step, _, state in active:
        step.finish(product, state)
        if product.meta.get(f"cal_step.{step.cal_step}") is None:
            step.record_status(product, "COMPLETE")
        log.info("step %-20s %7.2f s", step.name, step_seconds[step.name])

    if fit_step is None:
        product.meta.model_type = "RampModel"
        if save:
            path = product.save(output_name(source, pipeline.final_suffix, out_dir))
            log.info("wrote %s (peak memory %.0f MiB)", path, peak_rss_mb())
        return product

    if getattr(pipeline.params, "save_calibrated_ramp", False) and save:
        path = product.save(output_name(source, "ramp", out_dir))
        log.info("wrote %s", path)
    if keep_ramp:  # written (or not asked for): the products below do not need the ramp
        product.data = product.groupdq = None
    if fitter is None:
        raise DataShapeError(f"{source}: the exposure has no integrations to fit")
    t0 = time.perf_counter()
    rate, rateints = fitter.finish()
    fitopt = fitter.fitopt  # save_opt: the per-segment product (else None)
    fit_seconds += time.perf_counter() - t0
    # Its accumulators are not needed for the products; only its staged file is still watched.
    staged[:] = [fitter.staged] if fitter.staged is not None else []
    fitter = None
    if nints <= 1:
        rateints = None  # one integration: no _rateints product, nothing to calibrate
    log.info("step %-20s %7.2f s", "ramp_fit", fit_seconds)
    for alias in post_aliases[1:]:
        step = pipeline.steps[alias]
        rate = step.run(rate)
        if rateints is not None:
            rateints = step.run(rateints)
    if save:
        path = rate.save(output_name(source, "rate", out_dir))
        log.info("wrote %s", path)
        if rateints is not None and nints > 1:
            path = rateints.save(rateints_path)  # where it was staged
            log.info("wrote %s", path)
        if fitopt is not None:
            path = fitopt.save(output_name(source, "fitopt", out_dir))
            log.info("wrote %s", path)
    log.info("peak memory %.0f MiB", peak_rss_mb())
    return rate


# -- library entry point ---------------------------------------------------------------------

def run(pipeline_name, *inputs, output_dir=None, steps=None, overrides=None, crds_path=None,
        threads=None, save_results: bool = False, jobs: int = 1, **pipeline_options):
    """Run a pipeline from Python.

    Parameters
    ----------
    pipeline_name : str
        Alias (``"detector1"``), cfg name or cfg path.
    *inputs : str, Path, DataModel or association file
        One or more inputs; each is processed independently.
    output_dir : path, optional
        Where products go when saved.
    steps : dict, optional
        Step parameter overrides ``{"jump": {"rejection_threshold": 5}}``.
    overrides : dict, optional
        Reference files ``{"gain": "my_gain.fits", "ipc": "N/A"}``.
    save_results : bool
        Write products (the CLI does; the library returns models by default).
    jobs : int
        Inputs processed in parallel (processes) when > 1.

    Returns
    -------
    DataModel or list
        The final product for one input, else a list (an exception object for a failed input).
    """
    from .executor import run_many

    options = dict(pipeline_options, save_results=save_results, output_dir=output_dir)
    spec = dict(cfg=pipeline_name, steps=steps, overrides=overrides, crds_path=crds_path,
                threads=threads, options=options)
    if not inputs:
        raise ConfigError("jwpipe.run needs at least one input")
    results = run_many(spec, list(inputs), jobs=jobs)
    if len(results) == 1:
        if isinstance(results[0], BaseException):
            raise results[0]
        return results[0]
    return results


def run_one(spec: dict, init):
    """Build the pipeline described by ``spec`` and run it on ``init`` (picklable for --jobs)."""
    pipeline = build_pipeline(spec["cfg"], steps=spec.get("steps"),
                              overrides=spec.get("overrides"), crds_path=spec.get("crds_path"),
                              threads=spec.get("threads"), **spec.get("options", {}))
    if isinstance(init, (str, Path)) and str(init).endswith(".json"):
        asn = datamodels.load_asn(init)
        results = []
        for product in asn.products:
            for member in product.by_type("science"):
                results.append(execute(pipeline, member.path(asn.base)))
        return results[0] if len(results) == 1 else results
    if isinstance(init, (str, Path)) and not Path(init).exists():
        raise InputFileError(f"{init}: no such file")
    return execute(pipeline, init)


def run_many_cli(spec: dict, inputs: list, jobs: int = 1) -> list:
    """Run every input (processes when ``jobs`` > 1); failures come back as exceptions."""
    from .executor import run_many

    return run_many(spec, inputs, jobs=jobs)
