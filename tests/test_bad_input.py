"""Bad input: a clear error naming file, extension and keyword; exit status 2; nothing written."""

from __future__ import annotations

import shutil

import pytest
from astropy.io import fits
from conftest import sha256

from jwpipe.cli import main


def _oracle_args(case, out, replace=None):
    refs = dict(case["refs"])
    refs.update(replace or {})
    overrides = []
    for reftype, path in refs.items():
        if path is not None:
            overrides += ["--override", f"{reftype}={path}"]
    return ["detector1", "--output-dir", str(out), *overrides]


def _copy_with_header(src, dst, **changes):
    shutil.copy(src, dst)
    with fits.open(dst, mode="update") as hdul:
        for key, value in changes.items():
            if value is None:
                del hdul[0].header[key]
            else:
                hdul[0].header[key] = value


def _run(argv, capsys):
    status = main(argv)
    return status, capsys.readouterr().err


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def test_not_a_fits_file(tmp_path, out, nircam_oracle, capsys):
    bad = tmp_path / "jw_bad_uncal.fits"
    bad.write_text("SIMPLE? no, this is text\n")
    status, err = _run(_oracle_args(nircam_oracle, out) + [str(bad)], capsys)
    assert status == 2
    assert "jw_bad_uncal.fits" in err and "not a FITS file" in err
    assert "Traceback" not in err
    assert list(out.iterdir()) == []


def test_wrong_product_type(out, nircam_oracle, capsys):
    status, err = _run(_oracle_args(nircam_oracle, out) + [str(nircam_oracle["rate"])], capsys)
    assert status == 2
    assert nircam_oracle["rate"].name in err and "ImageModel" in err and "raw exposure" in err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("changes, words", [
    ({"NGROUPS": None}, ["NGROUPS", "missing", "PRIMARY"]),
    ({"INSTRUME": None}, ["INSTRUME", "missing"]),
    ({"NGROUPS": 11}, ["SCI", "NGROUPS=11"]),
    ({"NINTS": 7, "INTSTART": None, "INTEND": None}, ["SCI", "NINTS=7"]),
    ({"SUBSIZE1": 200}, ["SUBSIZE1=200"]),
    # A multistripe readout is refused rather than calibrated as an ordinary subarray.
    ({"MSTR_RD1": 4, "MSTR_RD2": 37, "SSTR_NST": 2},
     ["multistripe", "MSTR_RD1=4", "MSTR_RD2=37", "SSTR_NST=2"]),
])
def test_inconsistent_headers(tmp_path, out, nircam_oracle, capsys, changes, words):
    bad = tmp_path / "jw_edit_uncal.fits"
    _copy_with_header(nircam_oracle["uncal"], bad, **changes)
    before = sha256(bad)
    status, err = _run(_oracle_args(nircam_oracle, out) + [str(bad)], capsys)
    assert status == 2
    assert "jw_edit_uncal.fits" in err
    for word in words:
        assert word in err
    assert sha256(bad) == before
    assert list(out.iterdir()) == []


def test_unreadable_reference_file(tmp_path, out, nircam_oracle, capsys):
    garbage = tmp_path / "garbage_gain.fits"
    garbage.write_bytes(b"\0" * 100)
    argv = _oracle_args(nircam_oracle, out, {"gain": str(garbage)})
    status, err = _run(argv + [str(nircam_oracle["uncal"])], capsys)
    assert status == 2
    assert "garbage_gain.fits" in err
    assert list(out.iterdir()) == []


def test_missing_reference_names_type_and_keywords(out, nircam_oracle, capsys, monkeypatch):
    monkeypatch.delenv("CRDS_PATH", raising=False)
    argv = _oracle_args(nircam_oracle, out, {"dark": None})
    status, err = _run(argv + [str(nircam_oracle["uncal"])], capsys)
    assert status == 2
    assert "dark" in err and "DETECTOR" in err.upper() and "override" in err
    assert list(out.iterdir()) == []


def test_one_bad_input_does_not_stop_the_others(tmp_path, out, nircam_oracle, capsys):
    bad = tmp_path / "jw_bad_uncal.fits"
    bad.write_text("not fits")
    status, err = _run(_oracle_args(nircam_oracle, out) + [str(bad), str(nircam_oracle["uncal"])],
                       capsys)
    assert status == 2
    assert "1 of 2 input(s) failed" in err
    assert (out / "jw_nrc_sub160_g10_i3_s42_rate.fits").exists()


def test_a_stage1_step_alone_refuses_multistripe_data(nircam_oracle):
    """Run as a library step, too (no driver check before it): DataShapeError naming MSTR_RD1."""
    from jwpipe.errors import DataShapeError
    from jwpipe.steps.superbias import SuperBiasStep

    step = SuperBiasStep(overrides={"superbias": str(nircam_oracle["refs"]["superbias"])})
    model = step.open_input(nircam_oracle["uncal"])
    model.meta.subarray.multistripe_reads1 = 4
    with pytest.raises(DataShapeError, match="multistripe readout .*MSTR_RD1=4"):
        step.run(model)
    model.meta.subarray.multistripe_reads1 = None
    assert step.run(model).meta.cal_step.superbias == "COMPLETE"
