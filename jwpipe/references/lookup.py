"""Which reference file an exposure needs: an explicit override, else the local CRDS cache.

The lookup is fully offline: it reads the mapping files and reference files already in a CRDS
cache and never touches the network. Cache layout (as ``crds sync`` writes it)::

    $CRDS_PATH/mappings/jwst/             jwst_NNNN.pmap, jwst_<instr>_NNNN.imap, *.rmap
    $CRDS_PATH/references/jwst/<instr>/   reference files ("instrument" layout, the default)
    $CRDS_PATH/references/jwst/           reference files ("flat" layout)
    $CRDS_PATH/config/jwst/server_config  (optional) the operational context last seen

``CRDS_MAPPATH`` / ``CRDS_REFPATH`` relocate the mapping and reference trees as in CRDS (the
``jwst`` level is appended). The context is ``CRDS_CONTEXT`` when set (``jwst_1234.pmap``, or
``jwst-operational`` / ``jwst-edit`` resolved through ``server_config``), else the
highest-numbered ``jwst_NNNN.pmap`` present.

Parsed mappings are cached per file (path, modification time and size), so calling
:func:`find_reference` once per step and exposure costs a few dictionary look-ups.
"""

from __future__ import annotations

import ast
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Mapping as _MappingABC

import numpy as np

from ..datamodels import DataModel, Node
from ..datamodels import keywords as _kw
from ..errors import ReferenceFileError, ReferenceNotFoundError
from ..logs import get_logger
from .mappings import (
    NOT_APPLICABLE,
    OMIT,
    UNDEFINED,
    Mapping,
    NoMatch,
    condition_value,
    parse_mapping,
)

__all__ = ["NOT_APPLICABLE", "find_reference", "selection_parameters", "CrdsCache",
           "clear_caches", "reference_name_for_header"]

log = get_logger("references")

OBSERVATORY = "jwst"
_INSTRUMENT_KEY = "META.INSTRUMENT.NAME"
_PMAP_RE = re.compile(r"^jwst_(\d+)\.pmap$")
# Shown when no rmap tells which keywords matter (no cache, unknown instrument...).
_COMMON_PARKEYS = (
    "META.INSTRUMENT.NAME", "META.INSTRUMENT.DETECTOR", "META.EXPOSURE.TYPE",
    "META.SUBARRAY.NAME", "META.EXPOSURE.READPATT", "META.INSTRUMENT.FILTER",
    "META.INSTRUMENT.PUPIL", "META.INSTRUMENT.GRATING", "META.OBSERVATION.DATE",
    "META.OBSERVATION.TIME",
)

# FITS keyword -> metadata path (PRIMARY rows first), so flat dicts may use either spelling.
_PATH_BY_KEYWORD: dict[str, str] = {}
for _path, _keyword, _hdu, _type in _kw.KEYWORDS:
    _PATH_BY_KEYWORD.setdefault(_keyword, _path)


# -- exposure parameters ---------------------------------------------------------------------------

def _flatten(tree: _MappingABC, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}"
        if isinstance(value, _MappingABC):
            out.update(_flatten(value, path))
        elif isinstance(value, (str, int, float, bool)):
            out[path] = value
        elif isinstance(value, np.generic):
            out[path] = value.item()
    return out


def selection_parameters(meta) -> dict[str, Any]:
    """Exposure metadata as CRDS parameters: ``{"META.INSTRUMENT.DETECTOR": "NRCA1", ...}``.

    Parameters
    ----------
    meta : Node, DataModel, dict or None
        ``model.meta``, a model, a nested dict (``{"instrument": {"name": ...}}``), or a flat
        dict keyed by ``META.X.Y`` paths (any case) or FITS keywords (``DETECTOR``,
        ``DATE-OBS``).

    Returns
    -------
    dict
        Upper-case ``META.`` paths -> raw (unconditioned) values; unset values are left out.
    """
    if meta is None:
        return {}
    if isinstance(meta, DataModel):
        meta = meta.meta
    if isinstance(meta, Node):
        flat = _flatten(meta.to_dict(), ".".join(("META", *meta._path)).upper())
    elif isinstance(meta, _MappingABC):
        if any(isinstance(v, _MappingABC) for v in meta.values()):
            tree = meta["meta"] if set(meta) == {"meta"} else meta
            flat = _flatten(tree, "META")
        else:
            flat = dict(meta)
    else:
        raise TypeError(f"exposure metadata must be a model, model.meta or a dict, not "
                        f"{type(meta).__name__}")
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        upper = str(key).strip().upper()
        if not upper.startswith("META."):
            path = _PATH_BY_KEYWORD.get(upper)
            if path is not None:
                upper = "META." + path.upper()
        out[upper] = value
    return out


class _Exposure:
    """Raw and conditioned selection values for one exposure."""

    def __init__(self, meta):
        self.raw = selection_parameters(meta)
        conditioned = {key: condition_value(value) for key, value in self.raw.items()}
        # FITS-keyword aliases (EXP_TYPE, DETECTOR...) for rmap header expressions.
        for path, keyword, _hdu, _type in _kw.KEYWORDS:
            key = "META." + path.upper()
            if key in conditioned:
                conditioned.setdefault(keyword, conditioned[key])
        self.conditioned = conditioned

    def value(self, parkey: str) -> str:
        value = self.raw.get(parkey.upper())
        return UNDEFINED if value is None else repr(value) if isinstance(value, str) else str(value)

    def describe(self) -> str:
        parts = [str(self.raw[k]) for k in ("META.INSTRUMENT.NAME", "META.INSTRUMENT.DETECTOR",
                                           "META.EXPOSURE.TYPE", "META.SUBARRAY.NAME")
                 if self.raw.get(k) not in (None, "")]
        name = self.raw.get("META.FILENAME")
        text = " ".join(parts) if parts else "an exposure with no instrument metadata"
        return f"{name} ({text})" if name else text


def _label(parkey: str) -> str:
    """``META.INSTRUMENT.DETECTOR`` -> ``DETECTOR (meta.instrument.detector)``."""
    if parkey.upper().startswith("META."):
        path = parkey[5:].lower()
        found = _kw.keyword_for(path)
        return f"{found[0]} (meta.{path})" if found else f"meta.{path}"
    return parkey


# -- the cache -------------------------------------------------------------------------------------

_LOCK = threading.Lock()
_MAPPINGS: dict[str, tuple[int, int, Mapping]] = {}
_LISTINGS: dict[str, tuple[int, tuple[str, ...]]] = {}


def clear_caches() -> None:
    """Forget every parsed mapping and directory listing (they are re-read on next use)."""
    with _LOCK:
        _MAPPINGS.clear()
        _LISTINGS.clear()


def _load_mapping(path: Path) -> Mapping:
    key = str(path)
    stat = path.stat()
    with _LOCK:
        hit = _MAPPINGS.get(key)
        if hit is not None and hit[0] == stat.st_mtime_ns and hit[1] == stat.st_size:
            return hit[2]
    mapping = parse_mapping(path)
    with _LOCK:
        _MAPPINGS[key] = (stat.st_mtime_ns, stat.st_size, mapping)
    return mapping


class _Failure(Exception):
    """Internal: selection stopped; carries what to tell the user."""

    def __init__(self, why: str, rules: str | None = None, parkeys: tuple[str, ...] = ()):
        super().__init__(why)
        self.why = why
        self.rules = rules
        self.parkeys = parkeys


@dataclass(frozen=True)
class CrdsCache:
    """A local CRDS cache (read-only, offline).

    Attributes
    ----------
    mapping_dir : Path
        Folder of the ``.pmap``/``.imap``/``.rmap`` files (``<root>/mappings/jwst``).
    reference_dir : Path
        Folder of the reference files (``<root>/references/jwst``, with or without
        per-instrument subfolders).
    config_dir : Path or None
        ``<root>/config/jwst`` (server_config with the operational context), if known.
    source : str
        How the cache was found, for messages (``CRDS_PATH=/data/crds``).
    """

    mapping_dir: Path
    reference_dir: Path
    config_dir: Path | None
    source: str

    @classmethod
    def from_root(cls, root, source: str | None = None) -> "CrdsCache":
        root = Path(root).expanduser()
        return cls(root / "mappings" / OBSERVATORY, root / "references" / OBSERVATORY,
                   root / "config" / OBSERVATORY, source or f"crds_path={root}")

    @classmethod
    def resolve(cls, crds_path=None) -> "CrdsCache | None":
        """The cache given explicitly, else the one the CRDS environment variables name."""
        if crds_path not in (None, ""):
            return cls.from_root(crds_path, f"crds_path={crds_path}")
        env = os.environ
        root = env.get("CRDS_PATH", "").strip()
        mappath = env.get("CRDS_MAPPATH", "").strip()
        refpath = env.get("CRDS_REFPATH", "").strip()
        if not (root or (mappath and refpath)):
            return None
        base = cls.from_root(root, f"CRDS_PATH={root}") if root else None
        return cls(
            Path(mappath).expanduser() / OBSERVATORY if mappath else base.mapping_dir,
            Path(refpath).expanduser() / OBSERVATORY if refpath else base.reference_dir,
            base.config_dir if base else None,
            ", ".join(f"{name}={value}" for name, value in
                      (("CRDS_PATH", root), ("CRDS_MAPPATH", mappath), ("CRDS_REFPATH", refpath))
                      if value),
        )

    # -- mappings --
    def mapping(self, name: str, named_by: str | None = None) -> Mapping:
        """Parse (or fetch from the in-memory cache) mapping ``name``."""
        path = Path(name) if os.path.isabs(name) else self.mapping_dir / name
        if not path.is_file():
            where = f" (named by {named_by})" if named_by else ""
            raise _Failure(f"the cache is incomplete: mapping {name}{where} is not in "
                           f"{self.mapping_dir}")
        return _load_mapping(path)

    def contexts(self) -> tuple[str, ...]:
        """The ``jwst_NNNN.pmap`` files present, in increasing serial order."""
        folder = self.mapping_dir
        try:
            stamp = folder.stat().st_mtime_ns
        except OSError:
            return ()
        key = str(folder)
        with _LOCK:
            hit = _LISTINGS.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
        found = sorted((int(m.group(1)), m.group(0)) for m in
                       (_PMAP_RE.match(entry) for entry in os.listdir(folder)) if m)
        names = tuple(name for _, name in found)
        with _LOCK:
            _LISTINGS[key] = (stamp, names)
        return names

    def context_name(self, requested: str | None = None) -> str:
        """The context to use: ``requested``, else ``CRDS_CONTEXT``, else the newest present."""
        name = (requested or os.environ.get("CRDS_CONTEXT", "")).strip()
        origin = "context argument" if requested else "CRDS_CONTEXT"
        if name:
            if name.endswith(".pmap"):
                return name if os.path.isabs(name) else Path(name).name
            if re.fullmatch(r"jwst_\d+", name):
                return name + ".pmap"
            symbolic = self._symbolic_context(name)
            if symbolic:
                return symbolic
            newest = self.contexts()
            if not newest:
                raise _Failure(f"{origin} is {name!r}, which cannot be resolved offline, and "
                               f"there is no jwst_NNNN.pmap in {self.mapping_dir}")
            log.warning("%s=%r cannot be resolved offline (no server_config in the cache); "
                        "using the newest context present, %s", origin, name, newest[-1])
            return newest[-1]
        newest = self.contexts()
        if not newest:
            state = "" if self.mapping_dir.is_dir() else " (the folder does not exist)"
            raise _Failure(f"there is no jwst_NNNN.pmap context in {self.mapping_dir}{state}")
        return newest[-1]

    def server_info(self) -> dict:
        """The cache's ``config/jwst/server_config`` as a dict (``{}`` when absent or unreadable).

        CRDS writes it as a Python literal (``pprint``); JSON is accepted too.
        """
        if self.config_dir is None:
            return {}
        try:
            text = (self.config_dir / "server_config").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return {}
        try:
            info = json.loads(text)
        except ValueError:
            try:
                info = ast.literal_eval(text.strip())
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return {}
        return info if isinstance(info, dict) else {}

    def _symbolic_context(self, name: str) -> str | None:
        which = {"jwst-operational": "operational_context", "jwst-edit": "edit_context",
                 "jwst-latest": "edit_context"}.get(name.lower())
        if which is None:
            return None
        found = self.server_info().get(which)
        return str(found) if found else None

    def current_context(self) -> str | None:
        """The context the cache itself names: ``server_config``'s operational context when that
        pmap is present, else the newest ``jwst_NNNN.pmap``; None when there is none.

        Unlike :meth:`context_name`, ``CRDS_CONTEXT`` plays no part: this is the state of the
        cache (the context a writer of new mapping versions extends).
        """
        name = self._symbolic_context("jwst-operational")
        if name and (self.mapping_dir / name).is_file():
            return name
        newest = self.contexts()
        return newest[-1] if newest else None

    # -- references --
    def reference_candidates(self, name: str, instrument: str | None) -> list[Path]:
        """Where reference ``name`` may be: the instrument folder, then the flat folder."""
        folders = []
        if instrument:
            folders.append(self.reference_dir / instrument.lower())
        parts = name.lower().split("_")
        if len(parts) > 2 and parts[0] == OBSERVATORY:
            from_name = self.reference_dir / parts[1]
            if from_name not in folders:
                folders.append(from_name)
        folders.append(self.reference_dir)
        return [folder / name for folder in folders]

    def locate_reference(self, name: str, instrument: str | None = None) -> Path | None:
        """The path of reference ``name`` in the cache, or None."""
        for candidate in self.reference_candidates(name, instrument):
            if candidate.is_file():
                return candidate
        return None

    def describe(self) -> str:
        return (f"the local CRDS cache ({self.source}): rules in {self.mapping_dir}, files in "
                f"{self.reference_dir}[/<instrument>]; the network is never used")

    # -- selection --
    def best_reference(self, reftype: str, exposure: _Exposure, context: str | None,
                       require_file: bool = True) -> str:
        """The cached file for ``reftype`` (path) or ``"N/A"``; raises :class:`_Failure`.

        With ``require_file`` false, a selected file the cache lacks is returned as the path it
        would have in the instrument folder instead of failing.
        """
        ctx_name = self.context_name(context)
        pmap = self.mapping(ctx_name, "CRDS_CONTEXT" if not context else "context argument")
        if pmap.kind != "pipeline":
            raise _Failure(f"{pmap.name} is not a pipeline context (.pmap)")
        inst_key = str(pmap.parkeys[0] if pmap.parkeys else _INSTRUMENT_KEY).upper()
        instrument = exposure.conditioned.get(inst_key, UNDEFINED)
        if instrument == UNDEFINED:
            raise _Failure(f"{_label(inst_key)} is not set, so the instrument rules cannot be "
                           f"chosen (context {pmap.name})", pmap.name, (inst_key,))
        imap_name = pmap.selector.get(instrument)
        if imap_name is None:
            raise _Failure(f"context {pmap.name} has no rules for instrument {instrument} "
                           f"(it covers {', '.join(sorted(pmap.selector))})", pmap.name,
                           (inst_key,))
        if str(imap_name).upper() in (NOT_APPLICABLE, OMIT):
            return NOT_APPLICABLE
        imap = self.mapping(imap_name, pmap.name)
        rmap_name = imap.selector.get(reftype.upper())
        if rmap_name is None:
            raise _Failure(f"{imap.name} (context {pmap.name}) has no rules for reference type "
                           f"{reftype.upper()} (it covers {', '.join(sorted(imap.selector))})",
                           imap.name, (inst_key,))
        if str(rmap_name).upper() in (NOT_APPLICABLE, OMIT):
            return NOT_APPLICABLE
        rmap = self.mapping(rmap_name, imap.name)
        if rmap.kind != "reference":
            raise _Failure(f"{rmap.name} (named by {imap.name}) is not an rmap")
        rules = f"rules {rmap.name} in context {pmap.name}"
        try:
            chosen = rmap.select(exposure.conditioned, exposure.raw)
        except NoMatch as exc:
            raise _Failure(exc.reason, rules, rmap.parkeys) from None
        except ReferenceFileError as exc:
            raise ReferenceFileError(
                f"{exc} (context {pmap.name}); give the {reftype.upper()} file explicitly with "
                f"--override {reftype}=<file> or override_{reftype}=<file>") from exc
        if chosen == NOT_APPLICABLE:
            return NOT_APPLICABLE
        folder = str(rmap.header.get("instrument", "")).strip() or instrument
        path = self.locate_reference(chosen, folder)
        if path is None and not require_file:
            return str(self.reference_candidates(chosen, folder)[0])
        if path is None:
            looked = ", ".join(str(p.parent) for p in self.reference_candidates(chosen, folder))
            raise _Failure(f"the rules select {chosen}, but that file is not in the cache "
                           f"(looked in {looked}); sync it with `crds sync --files {chosen}` on "
                           "a networked machine, or give it as an override", rules, rmap.parkeys)
        return str(path)


# -- the public lookup -----------------------------------------------------------------------------

def _not_found(reftype: str, exposure: _Exposure, why: str, searched: str,
               rules: str | None = None, parkeys: tuple[str, ...] = ()) -> ReferenceNotFoundError:
    shown = parkeys or tuple(k for k in _COMMON_PARKEYS if k in exposure.raw) or _COMMON_PARKEYS[:3]
    lines = [f"no {reftype.upper()} reference file for {exposure.describe()}: {why}",
             f"  selection keywords{f' ({rules})' if rules else ''}:"]
    lines += [f"    {_label(p)} = {exposure.value(p)}" for p in shown]
    lines.append(f"  searched: {searched}")
    lines.append(f"  to provide the file: --override {reftype}=<file> on the command line, "
                 f"override_{reftype}=<file> in Python (or \"N/A\" if the type does not apply), "
                 "or set CRDS_PATH to a local CRDS cache holding the rules and files for this "
                 "mode (`crds sync --contexts <jwst_NNNN.pmap> --fetch-references` on a "
                 "networked machine)")
    return ReferenceNotFoundError("\n".join(lines))


def _use_override(reftype: str, override, crds_path) -> str:
    if isinstance(override, DataModel):
        if override.path is None:
            raise ReferenceFileError(f"override_{reftype}: the model given has no file; save it "
                                     "and pass the path")
        override = override.path
    if isinstance(override, os.PathLike):
        override = os.fspath(override)
    if not isinstance(override, str):
        raise ReferenceFileError(f"override_{reftype}: expected a file path or \"N/A\", got "
                                 f"{type(override).__name__}")
    text = override.strip()
    if text.upper() == NOT_APPLICABLE:
        return NOT_APPLICABLE
    if text.startswith("crds://"):
        name = text[len("crds://"):]
        cache = CrdsCache.resolve(crds_path)
        found = cache.locate_reference(name) if cache else None
        if found is None:
            where = cache.describe() if cache else "no CRDS cache (CRDS_PATH is not set)"
            raise ReferenceFileError(f"override_{reftype}: {text} is not in {where}")
        return str(found)
    path = Path(text).expanduser()
    if not path.is_file():
        state = "is a directory" if path.is_dir() else "does not exist"
        raise ReferenceFileError(f"override_{reftype}: reference file {path} {state} (given as "
                                 f"the {reftype} override)")
    return os.path.abspath(path)


def find_reference(reftype: str, meta, *, override=None, crds_path=None,
                   context: str | None = None, require_file: bool = True) -> str:
    """The reference file of type ``reftype`` for an exposure.

    Parameters
    ----------
    reftype : str
        CRDS reference type (``"dark"``, ``"gain"``...; any case).
    meta : Node, DataModel or dict
        The exposure metadata (``model.meta``; see :func:`selection_parameters`).
    override : str, Path, DataModel or None
        An explicit file (must exist), ``"N/A"`` (the type does not apply), or ``crds://name``
        (a file of the cache). ``None`` or ``""``: no override.
    crds_path : str or Path, optional
        A CRDS cache root; default ``$CRDS_PATH`` (or ``CRDS_MAPPATH`` + ``CRDS_REFPATH``).
    context : str, optional
        Pin the context (default ``$CRDS_CONTEXT``, else the newest ``jwst_NNNN.pmap``).
    require_file : bool
        When false, a file the rules select but the cache lacks is not an error: its path in
        the cache's instrument folder is returned, for the caller to check (default true).

    Returns
    -------
    str
        Absolute path of the reference file, or ``"N/A"`` when the type does not apply.

    Raises
    ------
    ReferenceFileError
        The override does not exist, or a mapping in the cache is malformed.
    ReferenceNotFoundError
        No override and the cache cannot supply the file; the message names the reference
        type, the selection keywords with the exposure's values, what was searched and how to
        provide the file.
    """
    reftype = str(reftype).strip().lower()
    if override is not None and not (isinstance(override, str) and not override.strip()):
        return _use_override(reftype, override, crds_path)
    exposure = _Exposure(meta)
    cache = CrdsCache.resolve(crds_path)
    if cache is None:
        raise _not_found(reftype, exposure, "no override was given and no CRDS cache is "
                         "configured", "nothing: CRDS_PATH is not set (and no crds_path was "
                         "given), so there is no local CRDS cache to search")
    try:
        return cache.best_reference(reftype, exposure, context, require_file)
    except _Failure as exc:
        raise _not_found(reftype, exposure, exc.why, cache.describe(), exc.rules,
                         exc.parkeys) from None


def reference_name_for_header(path) -> str:
    """The ``R_<TYPE>`` keyword value for a reference file: ``crds://<basename>`` (or N/A)."""
    text = os.fspath(path)
    if text.strip().upper() == NOT_APPLICABLE:
        return NOT_APPLICABLE
    if text.startswith("crds://"):
        return text
    return "crds://" + Path(text).name
