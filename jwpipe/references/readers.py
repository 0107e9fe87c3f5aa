"""Reading CRDS reference files (FITS and ASDF) and adapting them to an exposure.

* :func:`open_reference` opens a FITS reference as the jwpipe model for its type (checking REFTYPE
  and the extensions the type needs) or an ASDF reference as an :class:`AsdfReference`.
* :func:`cut_to_subarray` takes the part of a (full-frame or larger) reference array that lies
  under the science subarray (SUBSTRT1/2, SUBSIZE1/2).
* :func:`translate_dq` turns a reference's own DQ bits into standard JWST DQ flags through its
  DQ_DEF table.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any
from typing import Mapping as _MappingABC

import numpy as np

from .. import datamodels
from .. import dq as _dq
from ..datamodels import MODEL_CLASSES, DataModel, Node
from ..datamodels.fits_io import open_hdulist
from ..errors import InputFileError, ReferenceFileError
from .lookup import selection_parameters

__all__ = ["open_reference", "AsdfReference", "ReferenceFileWarning", "cut_to_subarray",
           "translate_dq", "REFTYPE_MODELS"]


class ReferenceFileWarning(UserWarning):
    """A reference file was read, but something about it is suspect (the message names it)."""


#: Reference type -> jwpipe model class name for FITS references.
REFTYPE_MODELS: dict[str, str] = {
    "gain": "GainModel", "readnoise": "ReadnoiseModel", "mask": "MaskModel",
    "saturation": "SaturationModel", "superbias": "SuperBiasModel",
    "linearity": "LinearityModel", "dark": "DarkModel", "ipc": "IPCModel",
    "reset": "ResetModel", "rscd": "RSCDModel", "flat": "FlatModel", "area": "PixelAreaModel",
    "photom": "PhotomModel", "trapdensity": "TrapDensityModel", "trappars": "TrapParsModel",
    "persat": "PersistenceSatModel", "pictureframe": "PictureFrameModel",
}

# Extensions a reference type cannot do without: alternatives, each a tuple of EXTNAMEs.
_NEEDED: dict[str, tuple[tuple[str, ...], ...]] = {
    "gain": (("SCI",),), "readnoise": (("SCI",),), "mask": (("DQ",),),
    "saturation": (("SCI",),), "superbias": (("SCI",),), "linearity": (("COEFFS",),),
    "dark": (("SCI",),), "ipc": (("SCI",),), "reset": (("SCI",),),
    "rscd": (("RSCD_GROUP_SKIP",), ("RSCD",)), "flat": (("SCI",),),
    "area": (("SCI",), ("AREA",)), "photom": (("PHOTOM",),), "trapdensity": (("SCI",),),
    "trappars": (("TRAPPARS",),), "persat": (("SCI",),), "pictureframe": (("SCI",),),
}
# Extensions that are tables; every other needed extension must be an image with data.
_TABLES = {"PHOTOM", "RSCD_GROUP_SKIP", "RSCD", "TRAPPARS", "AREA", "DQ_DEF"}


# -- opening ---------------------------------------------------------------------------------------

def _sniff(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ReferenceFileError(f"{path}: reference file cannot be read "
                                 f"({exc.strerror or exc})") from exc
    if head.startswith(b"SIMPLE  ="):
        return "fits"
    if head.startswith(b"#ASDF"):
        return "asdf"
    raise ReferenceFileError(f"{path}: reference file is neither FITS nor ASDF (it starts with "
                             f"{head[:8]!r})")


def open_reference(path, reftype: str | None = None):
    """Open a CRDS reference file.

    Parameters
    ----------
    path : str or Path
        The reference file (FITS or ASDF, recognised by content).
    reftype : str, optional
        The reference type the caller needs (``"dark"``...). When given, a FITS file whose
        PRIMARY REFTYPE names another type, or that lacks an extension the type needs, is
        rejected; an ASDF file whose ``meta.reftype`` differs likewise.

    Returns
    -------
    DataModel or AsdfReference
        FITS: the jwpipe model for the type (``DarkModel``, ``MaskModel``..., or the class the
        file's DATAMODL/REFTYPE names when ``reftype`` is None); arrays stay memory-mapped.
        ASDF: an :class:`AsdfReference` with ``.tree`` and ``.meta``.

    Raises
    ------
    ReferenceFileError
        Missing, unreadable, of the wrong type or lacking a needed extension; the message names
        the file, and the extension/keyword concerned.
    """
    path = Path(path)
    if not path.exists():
        raise ReferenceFileError(f"{path}: reference file does not exist")
    if path.is_dir():
        raise ReferenceFileError(f"{path}: is a directory, not a reference file")
    want = reftype.strip().lower() if reftype else None
    if _sniff(path) == "asdf":
        return _open_asdf(path, want)
    return _open_fits(path, want)


def _open_fits(path: Path, reftype: str | None) -> DataModel:
    try:
        hdul = open_hdulist(path)
    except InputFileError as exc:
        raise ReferenceFileError(str(exc)) from exc
    try:
        header = hdul[0].header
        found = str(header.get("REFTYPE", "")).strip().upper()
        if reftype is None:
            cls = None
        else:
            if found and found != reftype.upper():
                raise ReferenceFileError(
                    f"{path}: extension PRIMARY keyword REFTYPE = {found!r}, but a "
                    f"{reftype.upper()} reference is needed here")
            present: dict[str, str] = {}
            for hdu in hdul[1:]:
                name = str(hdu.header.get("EXTNAME", "")).strip().upper()
                is_table = hdu.header.get("XTENSION", "").strip().upper() in ("BINTABLE", "TABLE")
                has_data = is_table or hdu.header.get("NAXIS", 0) > 0
                if name and name not in present and has_data:
                    present[name] = "table" if is_table else "image"
            needed = _NEEDED.get(reftype)
            if needed and not any(all(present.get(ext) == ("table" if ext in _TABLES
                                                           else "image") for ext in option)
                                  for option in needed):
                wanted = " or ".join("+".join(f"{e} ({'table' if e in _TABLES else 'image'})"
                                              for e in option) for option in needed)
                have = ", ".join(f"{n} ({k})" for n, k in present.items()) or "none"
                raise ReferenceFileError(
                    f"{path}: a {reftype.upper()} reference needs extension {wanted}; the file "
                    f"has {have}")
            cls = _class_for(reftype, hdul)
    finally:
        hdul.close()
    try:
        return datamodels.open(path) if cls is None else cls(path)
    except InputFileError as exc:
        what = f" as a {reftype.upper()} reference" if reftype else ""
        raise ReferenceFileError(f"{exc} (reading it{what})") from exc


def _class_for(reftype: str, hdul) -> type[DataModel] | None:
    name = REFTYPE_MODELS.get(reftype)
    if name is None:
        return None  # let DATAMODL / REFTYPE / layout decide
    if reftype == "dark" and "SCI" in hdul and hdul["SCI"].header.get("NAXIS", 0) == 4:
        name = "DarkMIRIModel"
    return MODEL_CLASSES[name]


class AsdfReference:
    """An ASDF reference file (distortion, specwcs, camera, ...): its tree and metadata.

    Attributes
    ----------
    path : Path
        The file.
    tree : dict
        The whole ASDF tree (transforms as astropy models, arrays as numpy arrays), already
        read into memory, so the file is not kept open.
    """

    def __init__(self, path: Path, tree: dict):
        self.path = path
        self.tree = tree

    @property
    def meta(self) -> Node:
        """``tree['meta']`` with attribute access (``ref.meta.instrument.name``)."""
        meta = self.tree.get("meta")
        return Node(meta if isinstance(meta, dict) else {})

    @property
    def reftype(self) -> str | None:
        value = (self.tree.get("meta") or {}).get("reftype")
        return str(value) if value is not None else None

    def __getitem__(self, key: str) -> Any:
        try:
            return self.tree[key]
        except KeyError:
            raise KeyError(f"{self.path}: the ASDF tree has no {key!r} entry (it has "
                           f"{', '.join(map(str, self.tree))})") from None

    def __contains__(self, key) -> bool:
        return key in self.tree

    def keys(self):
        return self.tree.keys()

    def close(self) -> None:
        """Nothing to release (the tree was read eagerly); kept for symmetry with models."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<AsdfReference {self.path.name} reftype={self.reftype!r}>"


def _open_asdf(path: Path, reftype: str | None) -> AsdfReference:
    import asdf

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
            with asdf.open(io.BytesIO(raw), lazy_load=False, memmap=False) as af:
                tree = _materialise(af.tree)
        except Exception as exc:  # asdf raises many types (ValueError, YAML errors, ...)
            raise ReferenceFileError(f"{path}: cannot be read as an ASDF reference file "
                                     f"({type(exc).__name__}: {exc})") from exc
    for item in caught:
        message = str(item.message).splitlines()[0] if str(item.message) else ""
        warnings.warn(ReferenceFileWarning(
            f"{path}: the ASDF reader reports {item.category.__name__}: {message} -- the file "
            "was read, but check that it is a supported ASDF reference"), stacklevel=3)
    if not isinstance(tree, dict):
        raise ReferenceFileError(f"{path}: the ASDF tree is not a mapping")
    ref = AsdfReference(path, tree)
    if reftype is not None:
        found = ref.reftype
        if found is None:
            raise ReferenceFileError(f"{path}: the ASDF tree has no meta.reftype; a "
                                     f"{reftype.upper()} reference is needed here")
        if found.strip().lower() != reftype:
            raise ReferenceFileError(f"{path}: meta.reftype = {found!r} in the ASDF tree, but a "
                                     f"{reftype.upper()} reference is needed here")
    return ref


def _materialise(value):
    """Copy an ASDF tree into plain containers, loading arrays (so the file can be closed)."""
    if isinstance(value, dict):
        return {k: _materialise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_materialise(v) for v in value]
    if type(value).__name__ == "NDArrayType" or isinstance(value, np.ndarray):
        return np.array(value)
    return value


# -- subarrays -------------------------------------------------------------------------------------

_SUBARRAY = (("xstart", "SUBSTRT1"), ("ystart", "SUBSTRT2"), ("xsize", "SUBSIZE1"),
             ("ysize", "SUBSIZE2"))


def _subarray_values(meta) -> dict[str, Any]:
    if isinstance(meta, DataModel):
        meta = meta.meta
    if isinstance(meta, Node):
        return {attr: meta.get(f"subarray.{attr}") for attr, _ in _SUBARRAY} | {
            "name": meta.get("subarray.name")}
    if isinstance(meta, _MappingABC):
        params = selection_parameters(meta)
        return {attr: params.get(f"META.SUBARRAY.{attr.upper()}") for attr, _ in _SUBARRAY} | {
            "name": params.get("META.SUBARRAY.NAME")}
    if meta is None:
        return {}
    raise TypeError(f"subarray metadata must be a model, model.meta or a dict, not "
                    f"{type(meta).__name__}")


def _as_int(value, keyword: str, where: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ReferenceFileError(f"{where}: keyword {keyword} = {value!r} is not an integer") \
            from None


def cut_to_subarray(array, ref_meta, sci_meta, *, name: str):
    """The part of a reference array that lies under the science subarray.

    Parameters
    ----------
    array : ndarray or LazyArray of shape (..., ny_ref, nx_ref)
        Reference data; the last two axes are rows and columns.
    ref_meta : Node, DataModel, dict or None
        The reference's metadata; SUBSTRT1/SUBSTRT2 (1-based) place the array on the detector
        (missing: 1, i.e. the array starts at the detector corner). Its size is the array's.
    sci_meta : Node, DataModel or dict
        The science metadata: SUBSTRT1, SUBSTRT2, SUBSIZE1, SUBSIZE2 (all required).
    name : str
        The reference file (for messages).

    Returns
    -------
    ndarray or LazyArray of shape (..., SUBSIZE2, SUBSIZE1)
        ``array`` itself when it already covers exactly the science subarray, else a view
        (for a LazyArray, the converted slice).

    Raises
    ------
    ReferenceFileError
        The science subarray is not inside the reference, or a keyword is missing/invalid.
    """
    shape = tuple(array.shape)
    if len(shape) < 2:
        raise ReferenceFileError(f"{name}: reference array has shape {shape}; at least 2 "
                                 "dimensions are needed to cut a subarray")
    ref = _subarray_values(ref_meta)
    sci = _subarray_values(sci_meta)
    sci_vals = {attr: _as_int(sci.get(attr), kw, f"science data (for {name})")
                for attr, kw in _SUBARRAY}
    missing = [kw for attr, kw in _SUBARRAY if sci_vals[attr] is None]
    if missing:
        raise ReferenceFileError(
            f"{name}: cannot place the science subarray on the reference: the science "
            f"metadata lacks {', '.join(missing)} (meta.subarray.xstart/ystart/xsize/ysize)")
    rx = _as_int(ref.get("xstart"), "SUBSTRT1", name) or 1
    ry = _as_int(ref.get("ystart"), "SUBSTRT2", name) or 1
    ny, nx = shape[-2:]
    sx, sy, sw, sh = sci_vals["xstart"], sci_vals["ystart"], sci_vals["xsize"], sci_vals["ysize"]
    if (rx, ry, nx, ny) == (sx, sy, sw, sh):
        return array
    x0, y0 = sx - rx, sy - ry
    if x0 < 0 or y0 < 0 or x0 + sw > nx or y0 + sh > ny or sw <= 0 or sh <= 0:
        sub = f"{sci.get('name')} " if sci.get("name") else ""
        raise ReferenceFileError(
            f"{name}: the reference covers detector columns {rx}-{rx + nx - 1} and rows "
            f"{ry}-{ry + ny - 1} (SUBSTRT1={rx}, SUBSTRT2={ry}, array shape {shape}), which does "
            f"not contain the science subarray {sub}(SUBSTRT1={sx}, SUBSTRT2={sy}, "
            f"SUBSIZE1={sw}, SUBSIZE2={sh}: columns {sx}-{sx + sw - 1}, rows {sy}-{sy + sh - 1})")
    return array[..., y0:y0 + sh, x0:x0 + sw]


# -- DQ_DEF ----------------------------------------------------------------------------------------

_STANDARD = {name: 1 << bit for bit, name, _ in _dq.FLAGS}
_STANDARD["GOOD"] = 0


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip()


def _dq_def_rows(dq_def) -> list[tuple[int, str]]:
    """DQ_DEF as (VALUE, NAME) pairs, whatever container it comes in."""
    if dq_def is None:
        return []
    names = None
    if hasattr(dq_def, "colnames"):  # astropy Table
        names = list(dq_def.colnames)
    elif isinstance(dq_def, np.ndarray) and dq_def.dtype.names:
        names = list(dq_def.dtype.names)
    rows: list[tuple[int, str]] = []
    if names is not None:
        upper = {n.upper(): n for n in names}
        if "NAME" not in upper or not ({"VALUE", "BIT"} & set(upper)):
            raise ReferenceFileError(f"DQ_DEF needs columns NAME and VALUE (or BIT); it has "
                                     f"{', '.join(names)}")
        for row in dq_def:
            value = int(row[upper["VALUE"]]) if "VALUE" in upper else 1 << int(row[upper["BIT"]])
            rows.append((value, _text(row[upper["NAME"]])))
        return rows
    for row in dq_def:
        if isinstance(row, _MappingABC):
            keyed = {str(k).upper(): v for k, v in row.items()}
            value = int(keyed["VALUE"]) if "VALUE" in keyed else 1 << int(keyed["BIT"])
            rows.append((value, _text(keyed["NAME"])))
        else:
            bit, value, name = row[0], row[1], row[2]
            rows.append((int(value) if value is not None else 1 << int(bit), _text(name)))
    return rows


def translate_dq(dq, dq_def, *, name: str | None = None) -> np.ndarray:
    """Reference DQ values -> standard JWST DQ flags, through the reference's DQ_DEF table.

    Each DQ_DEF row says that the reference's bit(s) ``VALUE`` mean flag ``NAME``; every pixel
    with any of those bits set gets the standard flag of that name (jwpipe/dq.py). Bits that no
    row describes are dropped.

    Parameters
    ----------
    dq : array_like of unsigned int, any shape
        The reference DQ array as stored.
    dq_def : structured array, astropy Table, sequence of rows or None
        Columns BIT, VALUE, NAME, DESCRIPTION (any case; bytes or str names). ``None`` or empty:
        ``dq`` is already in standard flags and is returned as uint32.
    name : str, optional
        The reference file, for warnings.

    Returns
    -------
    ndarray of uint32, same shape as ``dq``

    Notes
    -----
    A NAME that is not a JWST DQ mnemonic is ignored with a :class:`ReferenceFileWarning`, as
    the reference pipeline does (stdatamodels ``dynamic_mask`` logs a warning and skips the row):
    mapping such rows to OTHER_BAD_PIXEL instead would flag pixels the reference pipeline keeps,
    so outputs would differ.
    """
    dq = np.asarray(dq)
    rows = _dq_def_rows(dq_def)
    if not rows:
        return dq.astype(np.uint32, copy=False)
    pairs: list[tuple[int, int]] = []
    for value, flag in rows:
        standard = _STANDARD.get(flag.upper())
        if standard is None:
            warnings.warn(ReferenceFileWarning(
                f"{name or 'reference'}: extension DQ_DEF names flag {flag!r} (VALUE {value}), "
                "which is not a JWST DQ mnemonic; those pixels get no flag (as in the reference "
                "pipeline)"), stacklevel=2)
            continue
        if value and standard:
            pairs.append((value & 0xFFFFFFFF, standard))
    wide = dq.astype(np.uint32, copy=False)
    if all(value == standard for value, standard in pairs):
        mask = np.uint32(np.bitwise_or.reduce([v for v, _ in pairs], initial=0))
        return np.bitwise_and(wide, mask)
    out = np.zeros(dq.shape, dtype=np.uint32)
    by_value: dict[int, int] = {}
    for value, standard in pairs:
        by_value[value] = by_value.get(value, 0) | standard
    for value, standard in by_value.items():
        out[(wide & np.uint32(value)) != 0] |= np.uint32(standard)
    return out
