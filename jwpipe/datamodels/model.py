"""The DataModel base class: arrays (lazy when read from a file), tables and a metadata tree."""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from astropy.io import fits

from ..errors import DataShapeError
from ..logs import get_logger
from . import keywords as kw
from .fits_io import FitsAssembler, LazyArray, atomic_path, lazy_image, open_hdulist
from .meta import Node

__all__ = ["ArraySpec", "DataModel"]

log = get_logger("datamodels")


@dataclass(frozen=True)
class ArraySpec:
    """How one array attribute is stored.

    Attributes
    ----------
    extname : str
        FITS extension name.
    dtype : str
        Physical numpy dtype.
    ndim : tuple of int
        Allowed numbers of dimensions.
    default : bool
        Create zeros (shaped like the trailing axes of ``data``) when read but absent.
    """

    extname: str
    dtype: str
    ndim: tuple[int, ...]
    default: bool = False


def _coerce(value, target: type):
    if value is None or target is str and isinstance(value, str):
        return value.strip() if isinstance(value, str) else value
    try:
        if target is bool:
            return bool(value)
        number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        if target is int and number and float(value).is_integer():
            return int(value)
        if target is float and number:
            return float(value)
        if target is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    return value


class DataModel:
    """A JWST product or reference file: arrays + tables + ``meta``.

    Parameters
    ----------
    init : str, Path, ndarray, tuple, DataModel or None
        A FITS file to open (arrays are memory-mapped and converted on first access), an array
        for ``data``, a shape for a zero-filled ``data``, or another model whose arrays and
        metadata are copied.
    **arrays
        Initial values of array or table attributes (``dq=...``).

    Notes
    -----
    Array attributes are declared per class in ``arrays`` (name -> :class:`ArraySpec`); any other
    image extension in a file is kept and written back unchanged, as are unknown header keywords
    (``extra_fits``) and tables, so reading and writing a file loses nothing.
    """

    model_type: ClassVar[str] = "DataModel"
    arrays: ClassVar[dict[str, ArraySpec]] = {}
    tables: ClassVar[dict[str, str]] = {}

    def __init__(self, init=None, **values):
        d = self.__dict__
        d["_arrays"] = {}
        d["_tables"] = {}
        d["_tree"] = {}
        d["extra_fits"] = {}
        d["_extra_hdus"] = []
        d["_asdf_bytes"] = None
        d["_asdf_extra"] = {}
        d["path"] = None
        if isinstance(init, (str, Path)):
            self._read(Path(init))
        elif isinstance(init, DataModel):
            self._copy_from(init)
        elif isinstance(init, np.ndarray):
            self.data = init
        elif isinstance(init, tuple):
            self.data = np.zeros(init, dtype=self.arrays["data"].dtype)
        elif init is not None:
            raise TypeError(f"cannot make a {type(self).__name__} from {type(init).__name__}")
        for name, value in values.items():
            setattr(self, name, value)
        self.meta.model_type = self.model_type

    # -- metadata ------------------------------------------------------------------------------
    @property
    def meta(self) -> Node:
        """The metadata tree (attribute access, ``model.meta.exposure.ngroups``)."""
        return Node(self._tree)

    @property
    def asdf_tree(self) -> dict:
        """Top-level entries of the file's ASDF extension other than ``meta`` and arrays."""
        self._load_asdf()
        return self._asdf_extra

    def _load_asdf(self) -> None:
        """Parse the ASDF extension (deferred: importing asdf/gwcs costs about a second)."""
        raw = self._asdf_bytes
        if raw is None:
            return
        self.__dict__["_asdf_bytes"] = None
        import asdf

        try:
            with asdf.open(io.BytesIO(raw), lazy_load=True, memmap=False) as af:
                tree = dict(af.tree)
        except Exception as exc:  # old or damaged trees: the FITS headers still hold the metadata
            log.warning("%s: extension ASDF cannot be parsed (%s); using the FITS headers only",
                        self.path, exc)
            return
        for key in ("asdf_library", "history", "_fits_hash"):
            tree.pop(key, None)
        meta = tree.pop("meta", {}) or {}
        _merge_missing(self._tree, _plain(meta))
        for key, value in tree.items():
            if key in self.arrays or key in self.tables or _is_ndarray(value):
                continue
            self._asdf_extra[key] = value

    def get_wcs(self):
        """The gwcs WCS stored in the file's ASDF extension, or ``meta.wcs`` if assigned."""
        self._load_asdf()
        return self._tree.get("wcs")

    # -- arrays --------------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        if name in type(self).arrays:
            value = d["_arrays"].get(name)
            if isinstance(value, LazyArray):
                value = value.read(slice(None), np.dtype(type(self).arrays[name].dtype))
                d["_arrays"][name] = value
            if value is None:
                value = self._default_array(name)
            return value
        if name in type(self).tables:
            return d["_tables"].get(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        if name in cls.arrays:
            if value is None:
                self._arrays.pop(name, None)
                return
            spec = cls.arrays[name]
            if not isinstance(value, LazyArray):
                value = np.asarray(value)
                if value.dtype != np.dtype(spec.dtype):
                    value = value.astype(spec.dtype)
            if value.ndim not in spec.ndim:
                raise DataShapeError(
                    f"{cls.__name__}.{name} ({spec.extname}) must have {spec.ndim} dimensions, "
                    f"got shape {value.shape}")
            self._arrays[name] = value
        elif name in cls.tables:
            self._tables[name] = None if value is None else np.asarray(value)
        elif name in ("meta",):
            raise AttributeError("assign into model.meta.<path>, not model.meta itself")
        else:
            object.__setattr__(self, name, value)

    def _default_array(self, name: str):
        spec = type(self).arrays[name]
        if not spec.default or name == "data" or not self.has("data"):
            return None
        shape = self.shape[-max(spec.ndim):] if max(spec.ndim) <= len(self.shape) else self.shape
        value = np.zeros(shape, dtype=spec.dtype)
        self._arrays[name] = value
        return value

    def has(self, name: str) -> bool:
        """Whether array or table ``name`` holds data (without loading it)."""
        return self._arrays.get(name) is not None or self._tables.get(name) is not None

    def lazy(self, name: str):
        """The array as stored: a :class:`LazyArray` if not yet loaded, else the ndarray."""
        return self._arrays.get(name)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``data`` (without loading it)."""
        data = self._arrays.get("data")
        return tuple(data.shape) if data is not None else ()

    def extension(self, extname: str):
        """An extension that no array attribute declares, by EXTNAME (lazy array or HDU)."""
        for name, obj in self._extra_hdus:
            if name == extname.upper():
                return obj
        raise KeyError(f"{self.path or type(self).__name__}: no extension {extname!r}")

    # -- copying -------------------------------------------------------------------------------
    def _copy_from(self, other: "DataModel") -> None:
        for name, value in other._arrays.items():
            if name in type(self).arrays and value is not None:
                self._arrays[name] = value if isinstance(value, LazyArray) else value.copy()
        for name, value in other._tables.items():
            if name in type(self).tables and value is not None:
                self._tables[name] = value.copy()
        self.__dict__["_tree"] = copy.deepcopy(other._tree)
        self.__dict__["extra_fits"] = copy.deepcopy(other.extra_fits)
        self.__dict__["_asdf_bytes"] = other._asdf_bytes
        self.__dict__["_asdf_extra"] = copy.deepcopy(other._asdf_extra)
        self.__dict__["path"] = other.path

    def copy(self) -> "DataModel":
        """A deep copy (lazy arrays stay lazy: their files are only ever read)."""
        return type(self)(self)

    # -- reading -------------------------------------------------------------------------------
    def _read(self, path: Path) -> None:
        self.__dict__["path"] = path
        hdul = open_hdulist(path)
        try:
            by_ext = {spec.extname: name for name, spec in type(self).arrays.items()}
            by_table = {ext: name for name, ext in type(self).tables.items()}
            self._read_header(hdul[0].header, "PRIMARY")
            sci_seen = False
            for index in range(1, len(hdul)):
                hdu = hdul[index]
                extname = str(hdu.header.get("EXTNAME", f"HDU{index}")).strip().upper()
                xtension = str(hdu.header.get("XTENSION", "")).strip().upper()
                if extname == "ASDF" or xtension == "ASDF":
                    # Current files: a table with one ASDF_METADATA cell. Older CRDS files: a
                    # uint8 image or a non-standard XTENSION='ASDF' extension. One tree either way.
                    self.__dict__["_asdf_bytes"] = _asdf_payload(hdu)
                    continue
                if xtension not in ("IMAGE", "BINTABLE", "TABLE"):
                    log.warning("%s: extension %s has non-standard type %r; it is not carried "
                                "into products written from this file", path, extname, xtension)
                    continue
                if self._read_extension(extname, hdu):
                    continue
                if extname == "SCI" and not sci_seen:
                    sci_seen = True
                    self._read_header(hdu.header, "SCI")
                if isinstance(hdu, (fits.ImageHDU, fits.CompImageHDU)) and extname in by_ext:
                    name = by_ext[extname]
                    array = lazy_image(hdul, index, path)
                    if array is not None:
                        spec = type(self).arrays[name]
                        if array.ndim not in spec.ndim:
                            raise DataShapeError(
                                f"{path}: extension {extname} has shape {array.shape}; a "
                                f"{self.model_type} needs {spec.ndim} dimensions there")
                        self._arrays[name] = array
                elif isinstance(hdu, fits.BinTableHDU) and extname in by_table:
                    self._tables[by_table[extname]] = _table_array(hdu.data)
                elif isinstance(hdu, fits.ImageHDU):
                    array = lazy_image(hdul, index, path)
                    self._extra_hdus.append((extname, array if array is not None else hdu.copy()))
                else:
                    self._extra_hdus.append((extname, hdu.copy()))
        finally:
            hdul.close()

    def _read_extension(self, extname: str, hdu) -> bool:
        """Take an extension this class stores in its own way; False leaves it to ``_read``."""
        return False

    def _read_header(self, header: fits.Header, hdu: str) -> None:
        meta = self.meta
        extra = self.extra_fits.setdefault(hdu, [])
        for card in header.cards:
            key = card.keyword
            if key in kw.STRUCTURAL or key.startswith("NAXIS") or key.startswith("TTYPE") \
                    or key.startswith("TFORM"):
                continue
            row = kw.BY_HDU_KEYWORD.get((hdu, key))
            if row is None:
                if key not in ("", "COMMENT", "HISTORY") or str(card.value).strip():
                    extra.append(fits.Card(card.keyword, card.value, card.comment))
                continue
            path, typ = row
            meta.set(path, _coerce(card.value, typ))

    # -- writing -------------------------------------------------------------------------------
    def save(self, path, overwrite: bool = True) -> Path:
        """Write the model as a JWST FITS product (atomically: temp file, then rename).

        A model whose arrays were staged in their product file as they were produced
        (:mod:`jwpipe.datamodels.staging`) is finished in place when saved to that product's
        path; otherwise, and if anything changed the staged layout, it is written in full.
        """
        path = Path(path)
        self.meta.filename = path.name
        staged = self.__dict__.get("_staged")
        if staged is not None and staged.commit(self, path, overwrite=overwrite):
            return path
        with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "r+b") as fh:
            self._write(FitsAssembler(fh))
        return path

    def _header_cards(self, hdu: str) -> list[fits.Card]:
        cards = []
        flat = {}
        for path, keyword, where, _ in kw.KEYWORDS:
            if where != hdu:
                continue
            value = self.meta.get(path)
            if value is None or isinstance(value, (dict, list)):
                continue
            if isinstance(value, np.generic):
                value = value.item()
            flat[keyword] = fits.Card(keyword, value)
        if hdu == "PRIMARY":
            from datetime import datetime, timezone

            flat["DATE"] = fits.Card("DATE", datetime.now(timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S.%f")[:-3], "UTC date file created")
            flat["DATAMODL"] = fits.Card("DATAMODL", self.model_type, "Type of data model")
        cards.extend(flat.values())
        for card in self.extra_fits.get(hdu, []):
            if card.keyword not in flat:
                cards.append(card)
        return cards

    def _image_cards(self, name: str) -> list[fits.Card]:
        """The non-structural header cards of array ``name``'s image extension."""
        cards = [fits.Card("EXTNAME", type(self).arrays[name].extname, "extension name")]
        if name == "data":
            cards += self._header_cards("SCI")
        return cards

    def _write(self, out: FitsAssembler) -> None:
        """Write every HDU, in file order, through ``out``."""
        out.primary(self._header_cards("PRIMARY"))
        tree_arrays = {}
        for name, spec in type(self).arrays.items():
            value = self._arrays.get(name)
            if value is None and spec.default:
                value = self._default_array(name)  # products always carry DQ/ERR
            if value is None:
                continue
            out.image(value, spec.dtype, self._image_cards(name))
            tree_arrays[name] = _fits_array_ref(spec.extname, spec.dtype, value.shape)
        for name, extname in type(self).tables.items():
            value = self._tables.get(name)
            if value is not None:
                if not out.record_table(extname, value):
                    out.hdu(fits.BinTableHDU(data=value, name=extname))
        tree_extra = self._write_extensions(out)
        for extname, obj in self._extra_hdus:
            if isinstance(obj, LazyArray):
                out.image(obj, obj.dtype, [fits.Card("EXTNAME", extname)])
            else:
                out.hdu(obj)
        out.bytes_table("ASDF", "ASDF_METADATA", self._asdf_tree_bytes(tree_arrays, tree_extra))

    def _write_extensions(self, out: FitsAssembler) -> dict:
        """Write extensions this class stores in its own way; return their ASDF tree entries."""
        return {}

    def _asdf_tree_bytes(self, tree_arrays: dict, tree_extra: dict | None = None) -> bytes:
        from .asdf_ext import asdf_bytes

        self._load_asdf()
        return asdf_bytes(self._tree, tree_arrays, {**self._asdf_extra, **(tree_extra or {})})

    # -- context management ----------------------------------------------------------------------
    def close(self) -> None:
        """Drop file-backed arrays (memory maps) that were never loaded."""
        for value in list(self._arrays.values()):
            if isinstance(value, LazyArray):
                value._mm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        where = f" from {self.path.name}" if self.path else ""
        return f"<{type(self).__name__}{where} shape={self.shape}>"


def _asdf_payload(hdu) -> bytes | None:
    """The ASDF bytes held by an ASDF extension in any of its historical layouts."""
    try:
        if isinstance(hdu, fits.BinTableHDU):
            return bytes(hdu.data["ASDF_METADATA"][0].tobytes())
        data = hdu.data
        if data is None:
            return None
        return bytes(np.asarray(data).tobytes()) if not isinstance(data, bytes) else data
    except Exception:  # an unreadable legacy tree must not make the file unreadable
        return None


def _table_array(data) -> np.ndarray:
    """A FITS table as a plain structured array with physical values.

    ``np.array(hdu.data)`` would return the stored integers, ignoring TZERO (unsigned columns
    such as DQ_DEF's VALUE come back shifted by 2**31); column access applies the scaling.
    """
    if data is None:
        return np.zeros(0)
    raw = np.array(data)
    scaled = {col.name for col in data.columns
              if col.bzero not in (None, 0) or col.bscale not in (None, 1)}
    if not scaled:
        return raw
    values = {name: np.asarray(data[name]) for name in scaled}
    descr = [(name, values[name].dtype.str if name in values else raw.dtype.fields[name][0],
              values[name].shape[1:] if name in values else ())
             for name in raw.dtype.names]
    out = np.empty(len(raw), dtype=[(n, t, s) if s else (n, t) for n, t, s in descr])
    for name in raw.dtype.names:
        out[name] = values[name] if name in values else raw[name]
    return out


def _fits_array_ref(extname: str, dtype: str, shape) -> dict:
    return {"source": f"fits:{extname},1", "datatype": str(np.dtype(dtype)),
            "byteorder": "big", "shape": [int(n) for n in shape]}


def _is_ndarray(value) -> bool:
    return isinstance(value, np.ndarray) or type(value).__name__ == "NDArrayType"


def _plain(value):
    """ASDF tagged containers -> plain dicts/lists (keeping objects such as a gwcs WCS)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _merge_missing(target: dict, source: dict) -> None:
    for key, value in source.items():
        if isinstance(value, dict):
            child = target.setdefault(key, {})
            if isinstance(child, dict):
                _merge_missing(child, value)
        elif key not in target:
            target[key] = value
