"""Every real product and reference file in ../shared/data/real opens with the right contents.

Checked against ``MANIFEST.tsv`` (size, SHA-256, header keywords, first array's shape/dtype):
FITS files through ``jwpipe.datamodels.open``, ASDF files through
``jwpipe.references.open_reference``. The shared folder is found through ``$JWPIPE_SHARED`` or
by walking up from this file to a sibling ``shared`` folder; without it the module is skipped.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits


def _find_real() -> Path | None:
    env = os.environ.get("JWPIPE_SHARED")
    candidates = [Path(env)] if env else [
        c for p in Path(__file__).resolve().parents for c in (p / "shared", p.parent / "shared")]
    for shared in candidates:
        if (shared / "data" / "real" / "MANIFEST.tsv").is_file():
            return shared / "data" / "real"
    return None


REAL = _find_real()
if REAL is None:
    pytest.skip("../shared/data/real (real JWST files and MANIFEST.tsv) is not present; set "
                "JWPIPE_SHARED to the shared folder to run these tests", allow_module_level=True)

from jwpipe import datamodels  # noqa: E402
from jwpipe.datamodels import LazyArray  # noqa: E402
from jwpipe.references import AsdfReference, ReferenceFileWarning, open_reference  # noqa: E402

PRODUCT_DIRS = ("crds_refs/", "flight_headers_only/", "flight_processed/", "ground_test/")

with open(REAL / "MANIFEST.tsv", newline="", encoding="utf-8") as _fh:
    ROWS = [row for row in csv.DictReader(_fh, delimiter="\t")
            if row["path"].startswith(PRODUCT_DIRS)]

# MANIFEST column -> metadata path
FITS_FIELDS = {
    "INSTRUME": "instrument.name", "DETECTOR": "instrument.detector",
    "EXP_TYPE": "exposure.type", "SUBARRAY": "subarray.name", "READPATT": "exposure.readpatt",
    "NGROUPS": "exposure.ngroups", "NINTS": "exposure.nints",
    "PROGRAM": "observation.program_number", "DATE-OBS": "observation.date",
    "REFTYPE": "reftype", "PEDIGREE": "pedigree", "FILENAME": "filename",
}
# The manifest records only these for ASDF references (from their meta tree).
ASDF_FIELDS = {"INSTRUME": "instrument.name", "DETECTOR": "instrument.detector",
               "EXP_TYPE": "exposure.type", "REFTYPE": "reftype", "PEDIGREE": "pedigree"}

_ARRAY_RE = re.compile(r"^(?P<ext>[\w-]+)\((?P<shape>[\d, ]*)\)(?P<dtype>\S+)$")


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def test_manifest_lists_every_product_and_reference_file():
    on_disk = {str(p.relative_to(REAL)) for d in PRODUCT_DIRS for p in (REAL / d).rglob("*")
               if p.is_file()}
    assert on_disk == {row["path"] for row in ROWS}
    assert len(ROWS) >= 50


def _array(model, extname: str):
    """The stored array of extension ``extname``: a declared attribute or an extra image."""
    for attr, spec in type(model).arrays.items():
        if spec.extname == extname and model.has(attr):
            return model.lazy(attr)
    return model.extension(extname)


def _check_primary_array(model, description: str, where: str):
    found = _ARRAY_RE.match(description)
    if found:
        shape = tuple(int(n) for n in found["shape"].split(",") if n.strip())
        stored = _array(model, found["ext"])
        assert isinstance(stored, (LazyArray, np.ndarray)), f"{where}: {found['ext']} not an image"
        assert tuple(stored.shape) == shape, f"{where}: {found['ext']} shape"
        expected = np.dtype(found["dtype"]).newbyteorder("=")
        assert stored.dtype == expected, f"{where}: {found['ext']} dtype {stored.dtype}"
        loaded = np.asarray(stored[(0,) * len(shape)]) if shape else None
        assert loaded is None or loaded.dtype == expected
        return
    # The ASDF extension (any layout) is the metadata tree, not a data extension of the model.
    wanted = Counter(tuple(item.split(":")) for item in description.split(",")
                     if not item.startswith("ASDF:"))
    have: Counter = Counter()
    for attr, extname in type(model).tables.items():
        if model.has(attr):
            have[(extname, "BinTableHDU")] += 1
    for extname, obj in model._extra_hdus:
        kind = "ImageHDU" if isinstance(obj, (LazyArray, fits.ImageHDU)) else type(obj).__name__
        have[(extname, kind)] += 1
    missing = wanted - have
    assert not missing, f"{where}: extensions {dict(missing)} not found (model has {dict(have)})"


@pytest.mark.parametrize("row", ROWS, ids=[r["path"] for r in ROWS])
def test_real_file_matches_manifest(row):
    path = REAL / row["path"]
    assert path.stat().st_size == int(row["bytes"])
    assert _sha256(path) == row["sha256"], f"{path}: not the file the manifest describes"
    if path.suffix == ".asdf":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ref = open_reference(path)
        ours = [w for w in caught if issubclass(w.category, ReferenceFileWarning)]
        if "bad_asdf_version" in path.name:
            assert ours and all(str(path) in str(w.message) for w in ours)
        else:
            assert not ours, [str(w.message) for w in ours]
        assert isinstance(ref, AsdfReference)
        meta, fields = ref.meta, ASDF_FIELDS
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReferenceFileWarning)
            assert open_reference(path, row["REFTYPE"]).reftype == row["REFTYPE"]
    else:
        model = datamodels.open(path)
        meta, fields = model.meta, FITS_FIELDS
        _check_primary_array(model, row["primary_array"], row["path"])
    for column, meta_path in fields.items():
        assert _text(meta.get(meta_path)) == row[column].strip(), \
            f"{row['path']}: {column} (meta.{meta_path})"


# niriss_ref_photom.fits (pre-launch layout, table named SCI) is rejected: see the readers tests.
@pytest.mark.parametrize("row", [r for r in ROWS if r["path"].endswith(".fits")
                                 and r["REFTYPE"].lower() in
                                 ("mask", "superbias", "dark", "ipc", "photom", "area")
                                 and "niriss_ref_photom" not in r["path"]],
                         ids=lambda r: r["path"])
def test_fits_references_open_as_their_type(row):
    path = REAL / row["path"]
    reftype = row["REFTYPE"].lower()
    model = open_reference(path, reftype)
    assert type(model).__name__ not in ("DataModel", "ImageModel")
    assert model.meta.reftype == row["REFTYPE"]


# -- legacy layouts of the ASDF metadata extension in older CRDS files ---------------------------

LEGACY_ASDF = [
    pytest.param("crds_refs/nircam/jwst_nircam_mask_0026_newhdr__from_stdatamodels_jwst_"
                 "nircam_mask_ref.fits", id="mask-XTENSION=ASDF"),
    pytest.param("crds_refs/nirspec/jwst_nirspec_superbias_0075.fits", id="superbias-ImageHDU"),
    pytest.param("crds_refs/nirspec/jwst_nirspec_area_0020.fits", id="area-ImageHDU"),
]



@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning")
@pytest.mark.parametrize("name", LEGACY_ASDF)
def test_legacy_asdf_extension_round_trip(name, tmp_path):
    """Older CRDS files keep the ASDF tree in a uint8 image or an XTENSION='ASDF' HDU; a copy
    must hold exactly one (standard) ASDF extension and reopen."""
    model = datamodels.open(REAL / name)
    out = model.save(tmp_path / "copy.fits")
    with fits.open(out) as hdul:
        names = [hdu.name for hdu in hdul]
    assert names.count("ASDF") == 1, names
    again = datamodels.open(out)
    assert again.meta.instrument.name == model.meta.instrument.name
