"""Shared fixtures: where the shared data live, and small helpers."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest


def _find_shared() -> Path | None:
    env = os.environ.get("JWPIPE_SHARED")
    if env and Path(env).is_dir():
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "shared"
        if (candidate / "data").is_dir():
            return candidate
        candidate = parent.parent / "shared"
        if (candidate / "data").is_dir():
            return candidate
    return None


SHARED = _find_shared()


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ../shared folder (skips the test when it is absent)."""
    if SHARED is None:
        pytest.skip("../shared (real files and oracle outputs) is not present")
    return SHARED


@pytest.fixture(scope="session")
def sim_cache(tmp_path_factory) -> Path:
    """The synthetic CRDS cache of the science and edge-case tests, built once per session."""
    from _sim_fixtures import build_cache

    return build_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def oracle(shared) -> Path:
    return shared / "data" / "oracle"


@pytest.fixture(scope="session")
def nircam_oracle(oracle) -> dict:
    """Paths of the NIRCam SUB160 oracle case: input, refs (reftype -> path), outputs."""
    return _oracle_case(oracle / "nircam_sub160")


@pytest.fixture(scope="session")
def miri_oracle(oracle) -> dict:
    return _oracle_case(oracle / "miri_sub256")


def _oracle_case(folder: Path) -> dict:
    import json

    overrides = json.loads((folder / "refs" / "overrides.json").read_text())
    refs = {k: (v if v == "N/A" else str(folder / "refs" / Path(v).name))
            for k, v in overrides.items()}
    inp = folder / "input"
    out = folder / "reference_outputs"
    return {
        "uncal": next(inp.glob("*_uncal.fits")),
        "truth": next(inp.glob("*_truth.npz")),
        "refs": refs,
        "ramp": next(out.glob("*_ramp.fits")),
        "rate": next(out.glob("*_rate.fits")),
        "rateints": next(out.glob("*_rateints.fits")),
    }


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
