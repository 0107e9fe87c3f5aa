"""Configurations, the driver, pipeline classes, the library API and the CLI's argument handling."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import jwpipe
from jwpipe import driver
from jwpipe.cli import main
from jwpipe.errors import ConfigError, StepNotImplementedError
from jwpipe.steps import KNOWN_STEPS
from jwpipe.steps.base import output_name

SEED_CONFIGS = ["calwebb_detector1.cfg", "calwebb_tso1.cfg", "calwebb_dark.cfg",
                "calwebb_image2.cfg", "calwebb_spec2.cfg", "calwebb_image3.cfg",
                "calwebb_spec3.cfg", "calwebb_ami3.cfg", "calwebb_coron3.cfg", "calwebb_tso3.cfg"]


@pytest.mark.parametrize("name", SEED_CONFIGS)
def test_every_seed_configuration_exists_and_parses(name):
    path = driver.config_dir() / name
    config = driver.load_config(path)
    assert config.orders["default"]
    assert all(step in KNOWN_STEPS for step in config.all_steps)
    pipeline = driver.build_pipeline(path)
    assert type(pipeline).__name__ == config.class_name.replace("TSO3", "Tso3")


def test_detector1_orders_follow_the_seed():
    config = driver.load_config(driver.find_config("detector1"))
    nir = config.orders["default"]
    seed_nir = ["group_scale", "dq_init", "saturation", "ipc", "superbias", "refpix", "linearity",
                "persistence", "dark_current", "jump", "ramp_fit", "gain_scale"]
    assert [s for s in nir if s in seed_nir] == seed_nir
    miri = config.orders["miri"]
    seed_miri = ["group_scale", "dq_init", "saturation", "ipc", "linearity", "rscd", "lastframe",
                 "dark_current", "refpix", "persistence", "jump", "ramp_fit", "gain_scale"]
    assert [s for s in miri if s in seed_miri] == seed_miri
    assert miri.index("reset") < miri.index("linearity")
    assert nir.index("charge_migration") < nir.index("jump") < nir.index("clean_flicker_noise")


def test_tso1_skips_what_the_seed_says():
    config = driver.load_config(driver.find_config("tso1"))
    for alias in ("ipc", "lastframe", "persistence"):
        assert config.step_params[alias]["skip"] == "true"


def test_dark_pipeline_stops_before_dark_current():
    config = driver.load_config(driver.find_config("dark"))
    for order in config.orders.values():
        assert "dark_current" not in order and "jump" not in order and "ramp_fit" not in order


def _write_cfg(tmp_path, text):
    path = tmp_path / "my.cfg"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("[pipeline]\nclass = Detector1Pipeline\n", "\\[order\\]"),
    ("[order]\ndefault = dq_init\n", "\\[pipeline\\]"),
    ("[pipeline]\nclass = Nope\n[order]\ndefault = dq_init\n", "unknown pipeline class"),
    ("[pipeline]\nclass = Detector1Pipeline\n[order]\ndefault = dq_init, nonsense\n",
     "unknown step"),
    ("[pipeline]\nclass = Detector1Pipeline\n[order]\ndefault = dq_init\n[stuff]\na = 1\n",
     "unknown section"),
    ("[pipeline]\nclass = Detector1Pipeline\n[order]\ndefault = dq_init\n[steps.jump]\nskip=1\n",
     "not in \\[order\\]"),
    ("[pipeline]\nclass = Detector1Pipeline\nbogus = 1\n[order]\ndefault = group_scale\n",
     "unknown parameter 'bogus'"),
    ("[pipeline]\nclass = Detector1Pipeline\n[order]\ndefault = group_scale\n"
     "[steps.group_scale]\nfrobnicate = 3\n", "unknown parameter 'frobnicate'"),
    ("[pipeline]\nclass = Detector1Pipeline\n[order]\ndefault = group_scale\n"
     "[steps.group_scale]\nskip = maybe\n", "not a valid bool"),
    ("not an ini file", "not a valid configuration"),
])
def test_bad_configurations_are_rejected_with_the_file_named(tmp_path, text, message):
    path = _write_cfg(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        driver.build_pipeline(path)
    assert "my.cfg" in str(info.value) or "frobnicate" in message or "bogus" in message


def test_user_overrides_win_and_are_checked(tmp_path):
    path = _write_cfg(tmp_path, "[pipeline]\nclass = Detector1Pipeline\n[order]\n"
                                "default = group_scale\n[steps.group_scale]\nskip = true\n")
    pipeline = driver.build_pipeline(path, steps={"group_scale": {"skip": "false"}})
    assert pipeline.steps["group_scale"].params.skip is False
    with pytest.raises(ConfigError, match="has no step"):
        driver.build_pipeline(path, steps={"jump": {"skip": True}})
    with pytest.raises(ConfigError, match="reference type"):
        driver.build_pipeline(path, overrides={"gain": "g.fits"})


def test_unimplemented_pipeline_says_so_before_work():
    pipeline = driver.build_pipeline("spec3")
    with pytest.raises(StepNotImplementedError, match="does not implement step"):
        driver.require_implemented(pipeline)


def test_pipeline_classes_are_exposed():
    for name in ("Detector1Pipeline", "DarkPipeline", "Image2Pipeline", "Spec2Pipeline",
                 "Image3Pipeline", "Spec3Pipeline", "Ami3Pipeline", "Coron3Pipeline",
                 "Tso3Pipeline", "TSO3Pipeline"):
        assert getattr(jwpipe, name).__name__ in (name, "Tso3Pipeline")
    pipeline = jwpipe.Detector1Pipeline(save_calibrated_ramp=True)
    assert pipeline.params.save_calibrated_ramp is True
    assert "ramp_fit" in pipeline.config.all_steps


@pytest.mark.parametrize("name, suffix, expected", [
    ("jw01_uncal.fits", "rate", "jw01_rate.fits"),
    ("jw01_rate.fits", "cal", "jw01_cal.fits"),
    ("/d/jw01_nrca1_uncal.fits", "rateints", "jw01_nrca1_rateints.fits"),
    ("odd.fits", "rate", "odd_rate.fits"),
])
def test_output_names(name, suffix, expected, tmp_path):
    assert output_name(name, suffix, tmp_path).name == expected
    assert output_name(name, suffix, tmp_path).parent == tmp_path


def test_show_config_reports_openmp(capsys):
    info = jwpipe.show_config()
    assert info["openmp"].startswith(("yes", "no"))
    assert "compiler" in capsys.readouterr().out


def test_cli_help_lists_pipelines_and_steps(tmp_path):
    # Run outside the source tree so the installed (compiled) package is the one imported.
    out = subprocess.run([sys.executable, "-m", "jwpipe", "--help"], capture_output=True,
                         text=True, check=True, cwd=tmp_path).stdout
    for alias in driver.PIPELINE_ALIASES:
        assert alias in out
    assert "ramp_fit" in out and "outlier_detection" in out


def test_cli_rejects_bad_options(tmp_path, capsys):
    assert main(["nonexistent-pipeline", "x.fits"]) == 2
    assert "unknown pipeline" in capsys.readouterr().err
    assert main(["detector1", "x.fits", "--steps.group_scale"]) == 2
    assert "needs a value" in capsys.readouterr().err
    assert main(["detector1", "x.fits", "--override", "gainfile"]) == 2
    assert "REFTYPE=FILE" in capsys.readouterr().err
    assert main(["spec3", "x.fits"]) == 2
    assert "does not implement" in capsys.readouterr().err


def test_demo_recovers_the_truth(tmp_path):
    """The demo's whole chain on a small, fast configuration: products, PNG and sane figures."""
    from jwpipe.demo import format_report, run_demo

    report = run_demo(tmp_path / "demo", dithers=2, subarray="SUB160", ngroups=5, jobs=1,
                      log=lambda msg: None)
    assert len(report.products) == 2 and all(p.exists() for p in report.products)
    assert report.quicklook.exists() and report.quicklook.read_bytes()[:4] == b"\x89PNG"
    f = report.figures
    # On a 160x160 one-output subarray the simulator's 1/f common mode dominates the rate
    # statistics (the reference-pixel correction cannot follow it row by row), so only their
    # presence is checked here; rate accuracy is tested on controlled simulations in
    # tests/test_science_*.py. Strong cosmic rays must all be found.
    assert f["pixels"] > 10 and np.isfinite(f["bias"]) and np.isfinite(f["z_sigma"])
    assert f["hits"] > 0 and f["flagged"] > 0.95
    assert "truth recovery" in format_report(report)


def test_timed_block_that_fails_is_not_logged_as_done(caplog):
    """A failed step or pipeline must not be reported 'done' (the CLI reports the error)."""
    import logging

    from jwpipe.logs import get_logger, timed

    log = get_logger("test-timed")
    with caplog.at_level(logging.DEBUG, logger=log.name):
        with pytest.raises(ValueError):
            with timed("failing thing", log):
                raise ValueError("boom")
        with timed("working thing", log):
            pass
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert any(lvl == logging.DEBUG and "failing thing stopped after" in m for lvl, m in messages)
    assert not any("failing thing done" in m for _, m in messages)
    assert any(lvl == logging.INFO and "working thing done in" in m for lvl, m in messages)


def test_steps_look_up_only_the_references_their_run_uses(monkeypatch):
    """``used_references`` decides which types are looked up; the rest are N/A untouched, and an
    optional type that is looked up but not found is N/A (the step goes on without it)."""
    from jwpipe.datamodels import RampModel
    from jwpipe.errors import ReferenceNotFoundError
    from jwpipe.steps.clean_flicker_noise import CleanFlickerNoiseStep
    from jwpipe.steps.persistence import PersistenceStep
    from jwpipe.steps.refpix import RefPixStep

    looked_up = []

    def fake_lookup(self, reftype, model):
        looked_up.append((self.name, reftype))
        raise ReferenceNotFoundError(f"no {reftype}")

    monkeypatch.setattr("jwpipe.steps.base.Step.get_reference", fake_lookup)
    model = RampModel(np.zeros((1, 3, 8, 8), np.float32))
    model.meta.instrument.name = "NIRCAM"
    model.meta.exposure.readpatt = "RAPID"

    off = PersistenceStep(PersistenceStep.Params(use_trap_model=False))
    assert set(off.get_references(model).values()) == {"N/A"} and not looked_up
    on = PersistenceStep(PersistenceStep.Params(use_trap_model=True))
    assert set(on.get_references(model).values()) == {"N/A"}
    assert {r for s, r in looked_up if s == "persistence"} == set(PersistenceStep.reference_types)

    assert RefPixStep().get_references(model) == {"refpix": "N/A", "sirskernel": "N/A"}
    assert not [x for x in looked_up if x[0] == "refpix"]  # median algorithm, not IRS2
    RefPixStep(RefPixStep.Params(refpix_algorithm="sirs")).get_references(model)
    assert ("refpix", "sirskernel") in looked_up and ("refpix", "refpix") not in looked_up

    assert CleanFlickerNoiseStep(CleanFlickerNoiseStep.Params(apply_flat_field=False)) \
        .get_references(model) == {"flat": "N/A"}
    assert ("clean_flicker_noise", "flat") not in looked_up
    CleanFlickerNoiseStep(CleanFlickerNoiseStep.Params(apply_flat_field=True)).get_references(model)
    assert ("clean_flicker_noise", "flat") in looked_up
