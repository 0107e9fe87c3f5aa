"""jwpipe: a fast re-implementation of the JWST calibration pipeline.

Run a pipeline from Python::

    import jwpipe
    rate = jwpipe.run("detector1", "jw01234001001_01101_00001_nrca1_uncal.fits",
                      steps={"jump": {"rejection_threshold": 5}}, save_results=True)

or from the shell: ``python -m jwpipe detector1 jw..._uncal.fits``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["run", "show_config", "__version__", "Detector1Pipeline", "DarkPipeline",
           "Image2Pipeline", "Spec2Pipeline", "Image3Pipeline", "Spec3Pipeline", "Ami3Pipeline",
           "Coron3Pipeline", "Tso3Pipeline", "TSO3Pipeline"]

_PIPELINES = {"Detector1Pipeline", "DarkPipeline", "Image2Pipeline", "Spec2Pipeline",
              "Image3Pipeline", "Spec3Pipeline", "Ami3Pipeline", "Coron3Pipeline",
              "Tso3Pipeline", "TSO3Pipeline"}


def run(pipeline, *inputs, **options):
    """Run a pipeline on inputs; see :func:`jwpipe.driver.run`."""
    from .driver import run as _run

    return _run(pipeline, *inputs, **options)


def show_config(file=None) -> dict:
    """Print and return versions, compiler, OpenMP and SIMD status of this build."""
    import platform
    import sys

    import numpy

    from ._ext import _build_config as build
    from ._ext._ramp_fit import simd

    info = {
        "jwpipe": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "compiler": f"{build.COMPILER} {build.COMPILER_VERSION}",
        "cython": build.CYTHON_VERSION,
        "openmp": f"yes ({build.OPENMP_VERSION})" if build.OPENMP else "no",
        "build type": build.BUILDTYPE,
        "cython checks": "on" if build.CYTHON_DEBUG else "off",
        "simd builds": f"{build.SIMD}; this CPU uses {simd()}",
    }
    for name in ("scipy", "astropy", "asdf", "gwcs", "photutils"):
        try:
            module = __import__(name)
            info[name] = getattr(module, "__version__", "?")
        except ImportError:
            info[name] = "not installed"
    out = file or sys.stdout
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}} : {value}", file=out)
    return info


def __getattr__(name):
    if name in _PIPELINES:
        from . import pipelines

        return getattr(pipelines, name)
    raise AttributeError(f"module 'jwpipe' has no attribute {name!r}")
