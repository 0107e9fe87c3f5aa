"""Pipeline classes (named as in the reference pipeline). Each is thin: a configuration file, its
pipeline-level parameters and the kind of flow; :mod:`jwpipe.driver` sequences the steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "PipelineParams", "Pipeline", "Detector1Pipeline", "DarkPipeline", "Image2Pipeline",
    "Spec2Pipeline", "Image3Pipeline", "Spec3Pipeline", "Ami3Pipeline", "Coron3Pipeline",
    "Tso3Pipeline", "TSO3Pipeline", "PIPELINE_CLASSES",
]


@dataclass
class PipelineParams:
    """Parameters every pipeline has. Products are written only when asked (the CLI asks)."""

    save_results: bool = False
    output_dir: str | None = None


@dataclass
class RampPipelineParams(PipelineParams):
    """Stage-1 pipelines stream integrations in blocks; 0 sizes blocks to about 256 MB."""

    integrations_per_block: int = 0


@dataclass
class Detector1Params(RampPipelineParams):
    save_calibrated_ramp: bool = False


@dataclass
class Image2Params(PipelineParams):
    save_bsub: bool = False


@dataclass
class Spec2Params(PipelineParams):
    save_bsub: bool = False
    fail_on_exception: bool = True


@dataclass
class Ami3Params(PipelineParams):
    save_averages: bool = False


class Pipeline:
    """Base class. ``flow`` names the driver routine: ``"ramp"`` streams integration blocks
    through stage-1 steps; ``"sequence"`` runs steps one after the other on whole products."""

    cfg: ClassVar[str] = ""
    flow: ClassVar[str] = "sequence"
    Params: ClassVar[type[PipelineParams]] = PipelineParams
    final_suffix: ClassVar[str] = "cal"

    def __init__(self, cfg=None, **options):
        from ..driver import build_pipeline

        build_pipeline(cfg or self.cfg, pipeline=self, **options)

    def run(self, *inputs):
        """Run on one input (file, association or model); returns the final product(s)."""
        from ..driver import execute

        results = [execute(self, item) for item in inputs]
        return results[0] if len(results) == 1 else results


class Detector1Pipeline(Pipeline):
    """Stage 1: ramps to slopes (``calwebb_detector1``; ``calwebb_tso1`` for time series)."""

    cfg = "calwebb_detector1.cfg"
    flow = "ramp"
    Params = Detector1Params
    final_suffix = "rate"


class DarkPipeline(Pipeline):
    """Stage 1 for darks: every correction before dark subtraction; writes ``_dark``."""

    cfg = "calwebb_dark.cfg"
    flow = "ramp"
    Params = RampPipelineParams
    final_suffix = "dark"


class Image2Pipeline(Pipeline):
    cfg = "calwebb_image2.cfg"
    Params = Image2Params


class Spec2Pipeline(Pipeline):
    cfg = "calwebb_spec2.cfg"
    Params = Spec2Params


class Image3Pipeline(Pipeline):
    cfg = "calwebb_image3.cfg"
    final_suffix = "i2d"


class Spec3Pipeline(Pipeline):
    cfg = "calwebb_spec3.cfg"
    final_suffix = "x1d"


class Ami3Pipeline(Pipeline):
    cfg = "calwebb_ami3.cfg"
    Params = Ami3Params
    final_suffix = "aminorm-oi"


class Coron3Pipeline(Pipeline):
    cfg = "calwebb_coron3.cfg"
    final_suffix = "i2d"


class Tso3Pipeline(Pipeline):
    cfg = "calwebb_tso3.cfg"
    final_suffix = "phot"


TSO3Pipeline = Tso3Pipeline  # the seed's spelling

PIPELINE_CLASSES = {cls.__name__: cls for cls in (
    Detector1Pipeline, DarkPipeline, Image2Pipeline, Spec2Pipeline, Image3Pipeline,
    Spec3Pipeline, Ami3Pipeline, Coron3Pipeline, Tso3Pipeline)}
PIPELINE_CLASSES["TSO3Pipeline"] = Tso3Pipeline
