"""Extracted spectra: ``_x1d`` (:class:`MultiSpecModel`), ``_x1dints`` (:class:`TSOMultiSpecModel`).

Each spectrum is one ``EXTRACT1D`` binary-table extension (EXTVER 1, 2, ...) whose header holds the
spectrum's metadata (slit name, source id, spectral order...: the ``specmeta`` schema) and whose
TUNITn keywords give the column units. In an ``_x1d`` table a row is one wavelength (``spectable``
schema); in an ``_x1dints`` table a row is one integration and the spectral columns are vectors
(``tso_spectable`` schema). The ASDF extension lists the spectra with their metadata and references
each table (``spec[i].spec_table`` -> ``fits:EXTRACT1D,i+1``), as the reference data models do.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import TableFormatError
from . import keywords as kw
from .asdf_ext import ArrayRef
from .model import DataModel, _coerce

__all__ = ["SPEC_COLUMNS", "TSO_COLUMNS", "SPEC_UNITS", "Spectrum", "spec_dtype",
           "empty_spec_table", "MultiSpecModel", "TSOMultiSpecModel"]

_NAN = float("nan")
_SB, _SB_VAR = "MJy/sr", "(MJy/sr)^2"

#: EXTRACT1D columns of an ``_x1d`` spectrum (``spectable`` schema), in file order:
#: (name, dtype, unit the extraction writes, value of an empty row).
SPEC_COLUMNS: tuple[tuple[str, str, str, float], ...] = (
    ("WAVELENGTH", "float64", "um", _NAN),
    ("FLUX", "float64", "Jy", _NAN), ("FLUX_ERROR", "float64", "Jy", _NAN),
    ("FLUX_VAR_POISSON", "float64", "Jy^2", _NAN), ("FLUX_VAR_RNOISE", "float64", "Jy^2", _NAN),
    ("FLUX_VAR_FLAT", "float64", "Jy^2", _NAN),
    ("SURF_BRIGHT", "float64", _SB, _NAN), ("SB_ERROR", "float64", _SB, _NAN),
    ("SB_VAR_POISSON", "float64", _SB_VAR, _NAN), ("SB_VAR_RNOISE", "float64", _SB_VAR, _NAN),
    ("SB_VAR_FLAT", "float64", _SB_VAR, _NAN),
    ("DQ", "uint32", "", 1),  # empty rows are DO_NOT_USE
    ("BACKGROUND", "float64", _SB, _NAN), ("BKGD_ERROR", "float64", _SB, _NAN),
    ("BKGD_VAR_POISSON", "float64", _SB_VAR, _NAN), ("BKGD_VAR_RNOISE", "float64", _SB_VAR, _NAN),
    ("BKGD_VAR_FLAT", "float64", _SB_VAR, _NAN),
    ("NPIXELS", "float64", "", 0),
)

_TIME_COLUMNS = ("MJD-BEG", "MJD-AVG", "MJD-END", "TDB-BEG", "TDB-MID", "TDB-END")

#: EXTRACT1D columns of an ``_x1dints`` spectrum (``tso_spectable`` schema): INT_NUM, the
#: :data:`SPEC_COLUMNS` as vectors (one value per wavelength), then per-integration scalars.
TSO_COLUMNS: tuple[tuple[str, str, str, float], ...] = (
    ("INT_NUM", "int32", "", 0),
    *SPEC_COLUMNS,
    ("N_ALONGDISP", "uint32", "", 0), ("SEGMENT", "int32", "", 0),
    *((name, "float64", "d", _NAN) for name in _TIME_COLUMNS),
)

_VECTOR_COLUMNS = frozenset(name for name, *_ in SPEC_COLUMNS)

#: Units written for columns whose spectrum gives none (TUNITn; units of the extraction step).
SPEC_UNITS: dict[str, str] = {name: unit for name, _, unit, _ in TSO_COLUMNS if unit}

_SPEC_META = {attr: (keyword, typ) for attr, keyword, typ in kw.SPECTRUM_KEYWORDS}
_SPEC_KEYWORDS = {keyword: (attr, typ) for attr, keyword, typ in kw.SPECTRUM_KEYWORDS}
# Column keywords astropy derives from the table itself.
_COLUMN_KEYWORD = re.compile(r"^T(TYPE|FORM|UNIT|DIM|ZERO|SCAL|NULL|DISP)\d+$")


def spec_dtype(n_elements: int | None = None) -> np.dtype:
    """The dtype of a spectrum table.

    Parameters
    ----------
    n_elements : int, optional
        None for an ``_x1d`` table (one row per wavelength, :data:`SPEC_COLUMNS`); the number of
        wavelengths for an ``_x1dints`` table (one row per integration, :data:`TSO_COLUMNS`, the
        spectral columns of shape ``(n_elements,)``).
    """
    if n_elements is None:
        return np.dtype([(name, dtype) for name, dtype, _, _ in SPEC_COLUMNS])
    return np.dtype([(name, dtype, (n_elements,)) if name in _VECTOR_COLUMNS else (name, dtype)
                     for name, dtype, _, _ in TSO_COLUMNS])


def empty_spec_table(n_rows: int, n_elements: int | None = None) -> np.ndarray:
    """A spectrum table filled with the schema's empty values (NaN, DQ = 1, counts 0).

    Parameters
    ----------
    n_rows : int
        Wavelengths (``_x1d``) or integrations (``_x1dints``).
    n_elements : int, optional
        Wavelengths per integration of an ``_x1dints`` table (see :func:`spec_dtype`).

    Returns
    -------
    ndarray of shape (n_rows,), structured with :func:`spec_dtype` fields
    """
    table = np.empty(n_rows, dtype=spec_dtype(n_elements))
    for name, _, _, empty in TSO_COLUMNS if n_elements is not None else SPEC_COLUMNS:
        table[name] = empty
    return table


class Spectrum:
    """One extracted spectrum: its EXTRACT1D table, column units and metadata.

    Parameters
    ----------
    spec_table : structured ndarray of shape (n_rows,), optional
        The table (see :func:`empty_spec_table`).
    units : dict of str to str, optional
        Column name -> unit (TUNITn). Columns not given here get :data:`SPEC_UNITS`.
    **meta
        Metadata of the ``specmeta`` schema by name (``name``, ``source_id``, ``spectral_order``,
        ``source_type``, ``extraction_xstart``... see ``keywords.SPECTRUM_KEYWORDS``); absent
        names read as None, unknown names are an error.

    Attributes
    ----------
    extra_cards : list of astropy.io.fits.Card
        Header keywords of the extension outside the schema, carried through unchanged.
    """

    def __init__(self, spec_table=None, units: dict | None = None, **meta):
        d = self.__dict__
        d["spec_table"] = None if spec_table is None else np.asarray(spec_table)
        d["units"] = {**SPEC_UNITS, **(units or {})}
        d["extra_cards"] = []
        d["_meta"] = {}
        for name, value in meta.items():
            setattr(self, name, value)

    def __getattr__(self, name: str):
        if name in _SPEC_META:
            return self.__dict__["_meta"].get(name)
        raise AttributeError(f"Spectrum has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in _SPEC_META:
            if value is None:
                self._meta.pop(name, None)
            else:
                self._meta[name] = value.item() if isinstance(value, np.generic) else value
        elif name == "spec_table":
            self.__dict__[name] = None if value is None else np.asarray(value)
        elif name in ("units", "extra_cards"):
            self.__dict__[name] = value
        else:
            raise AttributeError(f"Spectrum has no attribute {name!r} (metadata names are those "
                                 "of keywords.SPECTRUM_KEYWORDS)")

    def metadata(self) -> dict:
        """The metadata that is set, by name, in ``SPECTRUM_KEYWORDS`` order."""
        return {name: self._meta[name] for name in _SPEC_META if name in self._meta}

    def copy(self) -> "Spectrum":
        """A deep copy."""
        return copy.deepcopy(self)

    def __repr__(self) -> str:
        rows = "no table" if self.spec_table is None else f"{len(self.spec_table)} rows"
        return f"<Spectrum {self.name or ''} order={self.spectral_order} {rows}>"


class _SpectralProduct(DataModel):
    """Spectra (``spec``, a list of :class:`Spectrum`) and optional INT_TIMES table."""

    arrays = {}
    tables = {"int_times": "INT_TIMES"}
    #: The schema columns every spectrum table must have.
    columns: tuple[tuple[str, str, str, float], ...] = SPEC_COLUMNS

    def __init__(self, init=None, **values):
        if isinstance(init, (np.ndarray, tuple)):
            raise TypeError(f"a {type(self).__name__} holds spectra, not an image; pass spec=[...]")
        self.__dict__["spec"] = []
        super().__init__(init, **values)

    # -- reading ---------------------------------------------------------------------------------
    def _read(self, path: Path) -> None:
        super()._read(path)
        if not self.spec:
            raise TableFormatError(f"{path}: no EXTRACT1D extension; a {self.model_type} holds "
                                   "one EXTRACT1D binary table per spectrum")

    def _read_extension(self, extname: str, hdu) -> bool:
        if extname != "EXTRACT1D":
            return False
        where = f"{self.path}: extension EXTRACT1D (EXTVER {hdu.header.get('EXTVER', 1)})"
        if not isinstance(hdu, fits.BinTableHDU):
            raise TableFormatError(f"{where} is not a binary table")
        self.spec.append(_spectrum_from_hdu(hdu, self.columns, where))
        return True

    def _load_asdf(self) -> None:
        super()._load_asdf()
        # The spectra come from their extensions; the tree's copy of them is rebuilt on writing.
        self._asdf_extra.pop("spec", None)

    # -- writing ---------------------------------------------------------------------------------
    def _write_extensions(self, out) -> dict:
        if not self.spec:
            raise TableFormatError(f"{self.model_type}.spec is empty: nothing to write")
        entries = []
        for index, spectrum in enumerate(self.spec):
            where = f"{self.model_type}.spec[{index}].spec_table"
            if spectrum.spec_table is None:
                raise TableFormatError(f"{where} is not set")
            table = _standard_table(_fields(spectrum.spec_table, where),
                                    len(spectrum.spec_table), self.columns, where)
            out.hdu(_spectrum_hdu(table, spectrum, extver=index + 1))
            entries.append({**spectrum.metadata(),
                            "spec_table": _table_ref(f"EXTRACT1D,{index + 1}", table)})
        tree = {"spec": entries}
        if self.int_times is not None:
            tree["int_times"] = _table_ref("INT_TIMES,1", self.int_times)
        return tree

    # -- copying ---------------------------------------------------------------------------------
    def _copy_from(self, other: DataModel) -> None:
        super()._copy_from(other)
        if isinstance(other, _SpectralProduct):
            self.__dict__["spec"] = [spectrum.copy() for spectrum in other.spec]

    def __repr__(self) -> str:
        where = f" from {self.path.name}" if self.path else ""
        return f"<{type(self).__name__}{where} with {len(self.spec)} spectra>"


class MultiSpecModel(_SpectralProduct):
    """Extracted 1-D spectra (``_x1d``): ``spec``, one :class:`Spectrum` per slit, source or order.

    Each ``spec[i].spec_table`` has one row per wavelength, columns :data:`SPEC_COLUMNS`
    (float64, DQ uint32); spectra may have different lengths.

    Parameters
    ----------
    init : str, Path, DataModel or None
        A file to read, or a model to copy.
    spec : list of Spectrum, optional
    int_times : structured ndarray, optional
        The INT_TIMES table.
    """

    model_type = "MultiSpecModel"


class TSOMultiSpecModel(_SpectralProduct):
    """Per-integration spectra of a time series (``_x1dints``).

    Each ``spec[i]`` (one per spectral order or source) holds a table with one row per
    integration, columns :data:`TSO_COLUMNS`: the spectral columns are vectors of shape
    ``(n_elements,)`` (rows shorter than ``n_elements`` are padded; ``N_ALONGDISP`` gives the
    length), ``INT_NUM``/``SEGMENT``/``MJD-*``/``TDB-*`` are per-integration scalars.

    Parameters
    ----------
    init : str, Path, DataModel or None
        A file to read, or a model to copy.
    spec : list of Spectrum, optional
    int_times : structured ndarray, optional
        The INT_TIMES table (one row per integration).
    """

    model_type = "TSOMultiSpecModel"
    columns = TSO_COLUMNS


# -- table conversion ------------------------------------------------------------------------------

def _fields(table: np.ndarray, where: str) -> dict[str, np.ndarray]:
    if table.dtype.names is None:
        raise TableFormatError(f"{where}: must be a structured array, got dtype {table.dtype}")
    return {name: table[name] for name in table.dtype.names}


def _standard_table(values: dict[str, np.ndarray], n_rows: int, columns, where: str) -> np.ndarray:
    """The schema's columns (schema dtypes, native byte order) in schema order, then any others.

    Column names match case-insensitively, as FITS column names do; a missing schema column is an
    error naming ``where`` and the column. Vector columns keep their length.
    """
    by_upper = {name.upper(): name for name in values}
    for name, *_ in columns:
        if name not in by_upper:
            raise TableFormatError(f"{where}: no column {name} (the table has "
                                   f"{', '.join(values) or 'no columns'})")
    standard = {name for name, *_ in columns}
    descr = [(name, dtype, values[by_upper[name]].shape[1:]) for name, dtype, _, _ in columns]
    descr += [(name, value.dtype.newbyteorder("="), value.shape[1:])
              for name, value in values.items() if name.upper() not in standard]
    out = np.empty(n_rows, dtype=[(n, t, s) if s else (n, t) for n, t, s in descr])
    for name, *_ in descr:
        out[name] = values[by_upper.get(name.upper(), name)]
    return out


def _spectrum_from_hdu(hdu: fits.BinTableHDU, columns, where: str) -> Spectrum:
    data = hdu.data
    if data is None:  # a table without rows
        values, n_rows = {col.name: np.zeros(0, col.dtype) for col in hdu.columns}, 0
    else:  # column access applies TZERO (DQ is stored as int32 - 2**31)
        values, n_rows = {name: np.asarray(data[name]) for name in data.names}, len(data)
    spectrum = Spectrum(_standard_table(values, n_rows, columns, where))
    spectrum.units = {col.name.upper(): col.unit for col in hdu.columns if col.unit}
    for card in hdu.header.cards:
        key = card.keyword
        if key in _SPEC_KEYWORDS:
            attr, typ = _SPEC_KEYWORDS[key]
            setattr(spectrum, attr, _coerce(card.value, typ))
        elif not (key in kw.STRUCTURAL or key.startswith("NAXIS") or _COLUMN_KEYWORD.match(key)):
            spectrum.extra_cards.append(fits.Card(key, card.value, card.comment))
    return spectrum


def _spectrum_hdu(table: np.ndarray, spectrum: Spectrum, extver: int) -> fits.BinTableHDU:
    coldefs = fits.ColDefs(table)
    units = {name.upper(): unit for name, unit in spectrum.units.items()}
    for column in coldefs:
        column.unit = units.get(column.name.upper()) or None
    header = fits.Header([("EXTNAME", "EXTRACT1D", "extension name"),
                          ("EXTVER", extver, "extension value")])
    for attr, value in spectrum.metadata().items():
        header[_SPEC_META[attr][0]] = value
    for card in spectrum.extra_cards:
        if card.keyword not in header:
            header.append(card, end=True)
    return fits.BinTableHDU.from_columns(coldefs, header=header)


def _table_ref(source: str, table: np.ndarray) -> ArrayRef:
    """An ASDF ndarray node referencing a table extension, as the reference data models write."""
    datatype = []
    for name in table.dtype.names:
        base, shape = table.dtype[name].base, table.dtype[name].shape
        field = {"name": name, "datatype": _asdf_datatype(base), "byteorder": "big"}
        if shape:
            field["shape"] = [int(n) for n in shape]
        datatype.append(field)
    return ArrayRef(source=f"fits:{source}", datatype=datatype, byteorder="big",
                    shape=[len(table)])


def _asdf_datatype(dtype: np.dtype):
    if dtype.kind == "S":
        return ["ascii", dtype.itemsize]
    if dtype.kind == "U":  # astropy stores text columns as ASCII
        return ["ascii", dtype.itemsize // 4]
    return "bool8" if dtype.kind == "b" else dtype.name
