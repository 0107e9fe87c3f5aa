"""find_reference: overrides, then a local CRDS cache (offline), else a helpful error."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from jwpipe.datamodels import RampModel
from jwpipe.errors import ReferenceFileError, ReferenceNotFoundError
from jwpipe.references import (
    NOT_APPLICABLE,
    clear_caches,
    find_reference,
    lookup,
    reference_name_for_header,
    selection_parameters,
)

MAPPINGS = Path(__file__).parent / "data" / "crds" / "mappings"
REAL = None
for _parent in Path(__file__).resolve().parents:
    for _candidate in (_parent / "shared", _parent.parent / "shared"):
        if (_candidate / "data" / "real").is_dir() and REAL is None:
            REAL = _candidate / "data" / "real"
if os.environ.get("JWPIPE_SHARED"):
    REAL = Path(os.environ["JWPIPE_SHARED"]) / "data" / "real"

# Reference files present in the test cache: (layout folder, names).
CACHED = {
    "nircam": ["jwst_nircam_dark_0101.fits", "jwst_nircam_dark_0102.fits",
               "jwst_nircam_dark_0103.fits", "jwst_nircam_dark_0104.fits",
               "jwst_nircam_dark_0105.fits", "jwst_nircam_dark_0106.fits",
               "jwst_nircam_dark_0201.fits", "jwst_nircam_dark_0001.fits",
               "jwst_nircam_dark_0002.fits", "jwst_nircam_mask_0027.fits",
               "jwst_nircam_flat_0101.fits", "jwst_nircam_flat_0102.fits",
               "jwst_nircam_flat_0103.fits", "jwst_nircam_superbias_0011.fits",
               "jwst_nircam_superbias_0012.fits", "jwst_nircam_readnoise_0003.fits",
               "jwst_nircam_pars-detector1pipeline_0002.asdf",
               "jwst_nircam_pars-detector1pipeline_0003.asdf"],
    "miri": ["jwst_miri_dark_0201.fits", "jwst_miri_emicorr_0001.asdf",
             "jwst_miri_emicorr_0002.asdf"],
    "": ["jwst_nirspec_dark_0046.fits"],  # flat layout
}

NRCA2_FULL = {
    "META.INSTRUMENT.NAME": "NIRCAM", "META.INSTRUMENT.DETECTOR": "NRCA2",
    "META.EXPOSURE.TYPE": "NRC_IMAGE", "META.SUBARRAY.NAME": "FULL", "META.EXPOSURE.NOUTPUTS": 4,
    "META.OBSERVATION.DATE": "2023-03-01", "META.OBSERVATION.TIME": "10:11:12.345",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("CRDS_PATH", "CRDS_CONTEXT", "CRDS_MAPPATH", "CRDS_REFPATH", "CRDS_SERVER_URL"):
        monkeypatch.delenv(var, raising=False)
    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A CRDS cache: the fixture mappings plus empty reference files, as CRDS_PATH."""
    root = tmp_path / "crds"
    shutil.copytree(MAPPINGS, root / "mappings")
    for folder, names in CACHED.items():
        where = root / "references" / "jwst" / folder
        where.mkdir(parents=True, exist_ok=True)
        for name in names:
            (where / name).write_bytes(b"")
    monkeypatch.setenv("CRDS_PATH", str(root))
    return root


def ref(root: Path, name: str, folder: str = "nircam") -> str:
    return str(root / "references" / "jwst" / folder / name)


# -- selection through the cache -------------------------------------------------------------------

def test_newest_context_rules_and_instrument_layout(cache):
    assert find_reference("dark", NRCA2_FULL) == ref(cache, "jwst_nircam_dark_0105.fits")
    assert find_reference("DARK", {**NRCA2_FULL, "META.OBSERVATION.DATE": "2022-06-30"}) == \
        ref(cache, "jwst_nircam_dark_0104.fits")


def test_metadata_in_every_accepted_form(cache):
    expected = ref(cache, "jwst_nircam_dark_0105.fits")
    model = RampModel((1, 2, 4, 4))
    m = model.meta
    m.instrument.name, m.instrument.detector, m.exposure.type = "NIRCAM", "NRCA2", "NRC_IMAGE"
    m.subarray.name, m.exposure.noutputs = "FULL", 4
    m.observation.date, m.observation.time = "2023-03-01", "10:11:12.345"
    fits_keywords = {"INSTRUME": "NIRCAM", "DETECTOR": "NRCA2", "EXP_TYPE": "NRC_IMAGE",
                     "SUBARRAY": "FULL", "NOUTPUTS": 4, "DATE-OBS": "2023-03-01",
                     "TIME-OBS": "10:11:12.345"}
    nested = {"instrument": {"name": "NIRCAM", "detector": "NRCA2"},
              "exposure": {"type": "NRC_IMAGE", "noutputs": 4}, "subarray": {"name": "FULL"},
              "observation": {"date": "2023-03-01", "time": "10:11:12.345"}}
    lower = {k.lower(): v for k, v in NRCA2_FULL.items()}
    for meta in (model.meta, model, fits_keywords, nested, {"meta": nested}, lower, NRCA2_FULL):
        assert find_reference("dark", meta) == expected
    assert selection_parameters(fits_keywords) == selection_parameters(NRCA2_FULL)
    assert selection_parameters(model.meta.instrument) == {
        "META.INSTRUMENT.NAME": "NIRCAM", "META.INSTRUMENT.DETECTOR": "NRCA2"}


def test_crds_context_pins_an_older_context(cache, monkeypatch):
    monkeypatch.setenv("CRDS_CONTEXT", "jwst_0041.pmap")
    assert find_reference("dark", NRCA2_FULL) == ref(cache, "jwst_nircam_dark_0002.fits")
    monkeypatch.setenv("CRDS_CONTEXT", "jwst_0041")
    assert find_reference("dark", NRCA2_FULL) == ref(cache, "jwst_nircam_dark_0002.fits")
    monkeypatch.delenv("CRDS_CONTEXT")
    assert find_reference("dark", NRCA2_FULL, context="jwst_0041.pmap") == \
        ref(cache, "jwst_nircam_dark_0002.fits")


def test_symbolic_context_from_server_config(cache, monkeypatch, caplog):
    monkeypatch.setenv("CRDS_CONTEXT", "jwst-operational")
    with caplog.at_level(logging.WARNING, logger="jwpipe.references"):
        assert find_reference("dark", NRCA2_FULL).endswith("jwst_nircam_dark_0105.fits")
    assert "cannot be resolved offline" in caplog.text
    config = cache / "config" / "jwst"
    config.mkdir(parents=True)
    (config / "server_config").write_text(json.dumps({"operational_context": "jwst_0041.pmap"}))
    assert find_reference("dark", NRCA2_FULL).endswith("jwst_nircam_dark_0002.fits")


def test_server_config_as_crds_writes_it_and_current_context(cache, monkeypatch):
    """CRDS writes server_config as a Python literal (pprint), not JSON."""
    store = lookup.CrdsCache.from_root(cache)
    assert store.server_info() == {}
    assert store.current_context() == "jwst_0042.pmap"  # no server_config: the newest
    config = cache / "config" / "jwst"
    config.mkdir(parents=True)
    (config / "server_config").write_text(repr({
        "connected": False, "operational_context": "jwst_0041.pmap",
        "edit_context": "jwst_0042.pmap", "crds_version": {"str": "11.0"}}) + "\n")
    assert store.server_info()["connected"] is False
    assert store.current_context() == "jwst_0041.pmap"
    monkeypatch.setenv("CRDS_CONTEXT", "jwst_0042.pmap")  # the state of the cache, not the env
    assert store.current_context() == "jwst_0041.pmap"
    monkeypatch.setenv("CRDS_CONTEXT", "jwst-operational")
    assert find_reference("dark", NRCA2_FULL).endswith("jwst_nircam_dark_0002.fits")
    monkeypatch.setenv("CRDS_CONTEXT", "jwst-edit")
    assert find_reference("dark", NRCA2_FULL).endswith("jwst_nircam_dark_0105.fits")
    # An operational context that is not in the cache, or an unreadable file: the newest.
    (config / "server_config").write_text(repr({"operational_context": "jwst_0999.pmap"}))
    assert store.current_context() == "jwst_0042.pmap"
    (config / "server_config").write_text("{not a literal")
    assert store.server_info() == {} and store.current_context() == "jwst_0042.pmap"
    empty = lookup.CrdsCache.from_root(cache.parent / "nothing")
    assert empty.server_info() == {} and empty.current_context() is None


def test_newer_context_added_to_the_cache_is_used(cache):
    assert find_reference("dark", NRCA2_FULL).endswith("_0105.fits")
    mappings = cache / "mappings" / "jwst"
    text = (mappings / "jwst_0041.pmap").read_text().replace("jwst_0041", "jwst_0043")
    (mappings / "jwst_0043.pmap").write_text(text)
    future = time.time() + 5
    os.utime(mappings, (future, future))
    assert find_reference("dark", NRCA2_FULL).endswith("jwst_nircam_dark_0002.fits")


def test_flat_cache_layout(cache):
    nrs = {"INSTRUME": "NIRSPEC", "DETECTOR": "NRS1", "READPATT": "NRSRAPID",
           "SUBARRAY": "SUB512", "DATE-OBS": "2022-01-01", "TIME-OBS": "00:00:00"}
    assert find_reference("dark", nrs) == ref(cache, "jwst_nirspec_dark_0046.fits", "")


def test_instrument_folder_preferred_over_flat(cache):
    (cache / "references" / "jwst" / "jwst_nircam_dark_0105.fits").write_bytes(b"")
    assert find_reference("dark", NRCA2_FULL) == ref(cache, "jwst_nircam_dark_0105.fits")


def test_not_applicable_from_imap_rules_and_relevance(cache):
    assert find_reference("distortion", NRCA2_FULL) == NOT_APPLICABLE          # imap N/A
    led = {**NRCA2_FULL, "META.EXPOSURE.TYPE": "NRC_LED"}
    assert find_reference("dark", led) == NOT_APPLICABLE                       # rule gives N/A
    wfss = {**NRCA2_FULL, "META.EXPOSURE.TYPE": "NRC_WFSS"}
    assert find_reference("flat", wfss) == NOT_APPLICABLE                      # rmap_relevance
    miri = {"INSTRUME": "MIRI", "DETECTOR": "MIRIMAGE"}
    assert find_reference("superbias", miri) == NOT_APPLICABLE
    nrcb = {**NRCA2_FULL, "META.INSTRUMENT.DETECTOR": "NRCB1"}
    assert find_reference("superbias", nrcb) == NOT_APPLICABLE                 # reffile_required


def test_boolean_and_top_level_useafter(cache):
    tso = {**NRCA2_FULL, "META.VISIT.TSOVISIT": True}
    assert find_reference("pars-detector1pipeline", tso).endswith("_0003.asdf")
    miri = {"INSTRUME": "MIRI", "DATE-OBS": "2023-05-31", "TIME-OBS": "23:59:59"}
    assert find_reference("emicorr", miri) == ref(cache, "jwst_miri_emicorr_0001.asdf", "miri")


def test_explicit_crds_path_beats_environment(cache, monkeypatch, tmp_path):
    monkeypatch.setenv("CRDS_PATH", str(tmp_path / "nowhere"))
    assert find_reference("dark", NRCA2_FULL, crds_path=cache) == \
        ref(cache, "jwst_nircam_dark_0105.fits")


def test_crds_mappath_and_refpath(cache, monkeypatch, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.move(str(cache / "mappings"), str(moved / "maps"))
    shutil.move(str(cache / "references"), str(moved / "refs"))
    monkeypatch.delenv("CRDS_PATH")
    monkeypatch.setenv("CRDS_MAPPATH", str(moved / "maps"))
    monkeypatch.setenv("CRDS_REFPATH", str(moved / "refs"))
    assert find_reference("dark", NRCA2_FULL) == \
        str(moved / "refs" / "jwst" / "nircam" / "jwst_nircam_dark_0105.fits")


# -- overrides -------------------------------------------------------------------------------------

def test_override_file_wins_over_cache(cache, tmp_path, monkeypatch):
    mine = tmp_path / "my_dark.fits"
    mine.write_bytes(b"")
    assert find_reference("dark", NRCA2_FULL, override=str(mine)) == str(mine)
    assert find_reference("dark", NRCA2_FULL, override=mine) == str(mine)
    monkeypatch.chdir(tmp_path)
    assert find_reference("dark", NRCA2_FULL, override="my_dark.fits") == str(mine)


def test_override_needs_no_cache_and_no_metadata(tmp_path):
    mine = tmp_path / "g.fits"
    mine.write_bytes(b"")
    assert find_reference("gain", None, override=str(mine)) == str(mine)
    assert find_reference("gain", {}, override="N/A") == NOT_APPLICABLE
    assert find_reference("gain", {}, override="n/a ") == NOT_APPLICABLE


def test_override_that_does_not_exist(cache, tmp_path):
    missing = tmp_path / "no_such_dark.fits"
    with pytest.raises(ReferenceFileError) as info:
        find_reference("dark", NRCA2_FULL, override=str(missing))
    assert not isinstance(info.value, ReferenceNotFoundError)
    assert str(missing) in str(info.value) and "override_dark" in str(info.value)
    with pytest.raises(ReferenceFileError, match="is a directory"):
        find_reference("dark", NRCA2_FULL, override=str(tmp_path))


def test_empty_override_means_none(cache):
    assert find_reference("dark", NRCA2_FULL, override="") == \
        ref(cache, "jwst_nircam_dark_0105.fits")


def test_crds_uri_and_model_overrides(cache, tmp_path):
    assert find_reference("dark", {}, override="crds://jwst_nircam_dark_0101.fits") == \
        ref(cache, "jwst_nircam_dark_0101.fits")
    with pytest.raises(ReferenceFileError, match="crds://jwst_nircam_dark_9999.fits is not in"):
        find_reference("dark", {}, override="crds://jwst_nircam_dark_9999.fits")
    RampModel((1, 1, 2, 2)).save(tmp_path / "saved.fits")
    model = RampModel(tmp_path / "saved.fits")
    assert find_reference("dark", {}, override=model) == str(tmp_path / "saved.fits")
    with pytest.raises(ReferenceFileError, match="has no file"):
        find_reference("dark", {}, override=RampModel((1, 1, 2, 2)))
    with pytest.raises(ReferenceFileError, match="expected a file path"):
        find_reference("dark", {}, override=3)


# -- errors ----------------------------------------------------------------------------------------

def test_no_cache_configured():
    with pytest.raises(ReferenceNotFoundError) as info:
        find_reference("dark", NRCA2_FULL)
    text = str(info.value)
    for words in ("no DARK reference file", "CRDS_PATH is not set", "DETECTOR", "'NRCA2'",
                  "EXP_TYPE", "'NRC_IMAGE'", "--override dark=<file>", "override_dark=<file>",
                  "set CRDS_PATH"):
        assert words in text, words
    assert isinstance(info.value, LookupError) and isinstance(info.value, ReferenceFileError)


def test_cache_folder_without_mappings(tmp_path, monkeypatch):
    monkeypatch.setenv("CRDS_PATH", str(tmp_path / "empty"))
    with pytest.raises(ReferenceNotFoundError) as info:
        find_reference("gain", NRCA2_FULL)
    text = str(info.value)
    assert "no jwst_NNNN.pmap context in" in text and "(the folder does not exist)" in text
    assert f"CRDS_PATH={tmp_path / 'empty'}" in text


def test_no_matching_rule(cache):
    grism = {**NRCA2_FULL, "META.EXPOSURE.TYPE": "NRC_GRISM"}
    with pytest.raises(ReferenceNotFoundError) as info:
        find_reference("dark", grism)
    text = str(info.value)
    for words in ("no DARK reference file", "jwst_nircam_dark_0002.rmap", "jwst_0042.pmap",
                  "META.EXPOSURE.TYPE = 'NRC_GRISM' is not among the values the rules know",
                  "EXP_TYPE (meta.exposure.type) = 'NRC_GRISM'",
                  "NOUTPUTS (meta.exposure.noutputs) = 4",
                  "DATE-OBS (meta.observation.date) = '2023-03-01'",
                  f"CRDS_PATH={cache}", "--override dark=<file>", "override_dark=<file>"):
        assert words in text, words


def test_too_early_for_every_rule(cache):
    early = {**NRCA2_FULL, "META.INSTRUMENT.DETECTOR": "NRCA1",
             "META.OBSERVATION.DATE": "2001-01-01"}
    with pytest.raises(ReferenceNotFoundError, match="no rule is in use on 2001-01-01 10:11:12"):
        find_reference("dark", early)


def test_selected_file_missing_from_cache(cache):
    nrca1 = {**NRCA2_FULL, "META.INSTRUMENT.DETECTOR": "NRCA1"}
    with pytest.raises(ReferenceNotFoundError) as info:
        find_reference("gain", nrca1)
    text = str(info.value)
    assert "the rules select jwst_nircam_gain_0097.fits, but that file is not in the cache" in text
    assert str(cache / "references" / "jwst" / "nircam") in text
    assert "--override gain=<file>" in text


def test_selected_file_missing_allowed_when_not_required(cache):
    nrca1 = {**NRCA2_FULL, "META.INSTRUMENT.DETECTOR": "NRCA1"}
    assert find_reference("gain", nrca1, require_file=False) == \
        ref(cache, "jwst_nircam_gain_0097.fits")
    assert find_reference("dark", NRCA2_FULL, require_file=False) == \
        ref(cache, "jwst_nircam_dark_0105.fits")  # present: the same answer as by default
    early = {**nrca1, "META.OBSERVATION.DATE": "2001-01-01"}
    with pytest.raises(ReferenceNotFoundError, match="no rule is in use"):  # still an error
        find_reference("dark", early, require_file=False)


def test_unknown_instrument_reftype_and_missing_instrument(cache):
    with pytest.raises(ReferenceNotFoundError, match="no rules for instrument NIRISS"):
        find_reference("dark", {"INSTRUME": "NIRISS", "DETECTOR": "NIS"})
    with pytest.raises(ReferenceNotFoundError, match="has no rules for reference type WAVECORR"):
        find_reference("wavecorr", NRCA2_FULL)
    with pytest.raises(ReferenceNotFoundError, match=r"INSTRUME \(meta.instrument.name\) is not"):
        find_reference("dark", {"DETECTOR": "NRCA1"})


def test_incomplete_cache_and_bad_context(cache, monkeypatch):
    (cache / "mappings" / "jwst" / "jwst_nircam_dark_0002.rmap").unlink()
    with pytest.raises(ReferenceNotFoundError, match=r"the cache is incomplete: mapping "
                                                     r"jwst_nircam_dark_0002.rmap \(named by "
                                                     r"jwst_nircam_0002.imap\)"):
        find_reference("dark", NRCA2_FULL)
    monkeypatch.setenv("CRDS_CONTEXT", "jwst_0999.pmap")
    with pytest.raises(ReferenceNotFoundError, match=r"jwst_0999.pmap \(named by CRDS_CONTEXT\)"):
        find_reference("mask", NRCA2_FULL)


def test_ambiguous_rules_are_a_reference_error(cache):
    nrca1 = {**NRCA2_FULL, "META.INSTRUMENT.DETECTOR": "NRCA1"}
    with pytest.raises(ReferenceFileError) as info:
        find_reference("readnoise", nrca1)
    assert "ambiguous rules" in str(info.value) and "--override readnoise=<file>" in str(info.value)


def test_malformed_mapping_names_file(cache):
    rmap = cache / "mappings" / "jwst" / "jwst_nircam_mask_0003.rmap"
    rmap.write_text(rmap.read_text().replace("selector = Match({", "selector = Match(os.system({"))
    with pytest.raises(ReferenceFileError, match=r"jwst_nircam_mask_0003.rmap, line \d+"):
        find_reference("mask", NRCA2_FULL)


# -- caching ---------------------------------------------------------------------------------------

def test_mappings_parsed_once_and_reparsed_when_changed(cache, monkeypatch):
    calls = []
    real = lookup.parse_mapping
    monkeypatch.setattr(lookup, "parse_mapping", lambda p: calls.append(Path(p).name) or real(p))
    for _ in range(3):
        assert find_reference("dark", NRCA2_FULL).endswith("_0105.fits")
    assert calls == ["jwst_0042.pmap", "jwst_nircam_0002.imap", "jwst_nircam_dark_0002.rmap"]
    rmap = cache / "mappings" / "jwst" / "jwst_nircam_dark_0002.rmap"
    rmap.write_text(rmap.read_text().replace("jwst_nircam_dark_0105.fits",
                                             "jwst_nircam_dark_0106.fits"))
    future = time.time() + 5
    os.utime(rmap, (future, future))
    assert find_reference("dark", NRCA2_FULL).endswith("_0106.fits")
    assert calls[-1] == "jwst_nircam_dark_0002.rmap" and len(calls) == 4


def test_repeated_lookups_are_cheap(cache):
    find_reference("dark", NRCA2_FULL)
    start = time.perf_counter()
    for _ in range(200):
        find_reference("dark", NRCA2_FULL)
    assert (time.perf_counter() - start) / 200 < 0.005


def test_reference_name_for_header():
    assert reference_name_for_header("/a/b/jwst_nircam_dark_0105.fits") == \
        "crds://jwst_nircam_dark_0105.fits"
    assert reference_name_for_header(Path("x/my_gain.fits")) == "crds://my_gain.fits"
    assert reference_name_for_header("N/A") == "N/A"


# -- with real files -------------------------------------------------------------------------------

needs_real = pytest.mark.skipif(REAL is None or not REAL.is_dir(),
                                reason="../shared/data/real is not present")


@needs_real
def test_real_flight_header_selects_and_explains(cache):
    from jwpipe import datamodels

    header = datamodels.open(REAL / "flight_headers_only" / "nircam_coron" /
                             "jw01075001001_03105_00009_nrca3_uncal.fits")
    assert find_reference("mask", header.meta) == ref(cache, "jwst_nircam_mask_0027.fits")
    assert find_reference("superbias", header.meta) == NOT_APPLICABLE
    with pytest.raises(ReferenceNotFoundError) as info:
        find_reference("flat", header.meta)
    text = str(info.value)
    assert "jw01075001001_03105_00009_nrca3_uncal.fits (NIRCAM NRCA3 NRC_CORON FULL)" in text
    assert "FILTER (meta.instrument.filter) = 'F210M'" in text
    assert "DATE-OBS (meta.observation.date) = '2022-05-14'" in text


@needs_real
def test_real_reference_found_then_opened(cache):
    from jwpipe.references import cut_to_subarray, open_reference

    nircam = cache / "references" / "jwst" / "nircam"
    (nircam / "jwst_nircam_mask_0026.fits").symlink_to(
        REAL / "crds_refs" / "nircam" /
        "jwst_nircam_mask_0026_newhdr__from_stdatamodels_jwst_nircam_mask_ref.fits")
    nrca1 = {**NRCA2_FULL, "META.INSTRUMENT.DETECTOR": "NRCA1", "META.SUBARRAY.NAME": "SUB160",
             "META.SUBARRAY.XSTART": 1009, "META.SUBARRAY.YSTART": 1, "META.SUBARRAY.XSIZE": 160,
             "META.SUBARRAY.YSIZE": 160}
    path = find_reference("mask", nrca1)
    assert path == str(nircam / "jwst_nircam_mask_0026.fits")
    mask = open_reference(path, "mask")
    assert type(mask).__name__ == "MaskModel" and mask.shape == ()
    cut = cut_to_subarray(mask.dq, mask.meta, nrca1, name=Path(path).name)
    assert cut.shape == (160, 160) and cut.dtype.name == "uint32"
    assert reference_name_for_header(path) == "crds://jwst_nircam_mask_0026.fits"
