"""CRDS mapping files (``.pmap``, ``.imap``, ``.rmap``): a safe reader and the selection rules.

A CRDS mapping is written in a small subset of Python::

    header = {
        'mapping' : 'REFERENCE',
        'parkey' : (('META.INSTRUMENT.DETECTOR', 'META.SUBARRAY.NAME'),
                    ('META.OBSERVATION.DATE', 'META.OBSERVATION.TIME')),
        ...
    }
    selector = Match({
        ('NRCA1', 'FULL|SUB640') : UseAfter({
            '2014-10-01 00:00:00' : 'jwst_nircam_dark_0101.fits',
        }),
    })

It is read here with :mod:`ast` and never executed: only literals (strings, numbers, tuples,
lists, dicts) and calls of the known selector names (``Match``, ``UseAfter``, ``SelectVersion``,
``VersionAfter``, ``ClosestTime``, ``GeometricallyNearest``) wrapping one dict are accepted;
anything else is a :class:`~jwpipe.errors.ReferenceFileError` naming the file and line.

Selection follows the CRDS rules (``crds.core.selectors``, re-derived, not copied):

* Values on both sides are *conditioned*: stripped and upper-cased, numbers written as floats
  (``4`` and ``'4'`` both become ``'4.0'``), booleans ``'T'``/``'F'``, ``'ANY'`` -> ``'*'``,
  ``'NOT APPLICABLE'`` -> ``'N/A'``. A parameter the exposure lacks is ``'UNDEFINED'``.
* A ``Match`` key field is compared with the exposure value: a literal must be equal; ``A|B``
  (or a tuple) is any-of with shell globs (``*`` matches anything, so ``ANY`` does too); ``N/A``
  is "don't care" and always passes; ``{x}`` is a literal, ``(re)`` a regular expression,
  ``>1.5``, ``between 3000 3200``, ``# >1 and <=20 #`` and ``NOT x`` relations.
* Each matching field counts 1, a "don't care" field 0: among the surviving cases the one with
  the most matching fields wins, so a specific rule beats one with ``N/A`` fields. Two cases
  with the same best weight are ambiguous: an error for JWST (CRDS merges them only for HST, or
  when the header sets ``raise_ambiguous`` false; then equal-weight ``UseAfter`` rules are
  merged, the later file name winning a date collision).
* If the best case's nested selector finds nothing (e.g. every ``UseAfter`` date is after the
  observation), the next best case is tried.
* ``UseAfter`` picks the latest date <= observation DATE + TIME (a date equal to the observation
  time is used).
* The rmap header may carry ``substitutions`` (``{'META.SUBARRAY.NAME': {'GENERIC': 'N/A'}}``,
  applied to the rule keys), ``rmap_relevance`` / ``rmap_omit`` (expressions over the exposure
  values; not relevant or omitted -> not applicable), ``parkey_relevance`` (a parameter whose
  expression is false is matched as N/A) and ``reffile_required`` (``'NO'``: no match means not
  applicable). Expressions are evaluated by a small AST interpreter (comparisons, ``in``,
  ``and``/``or``/``not``), never ``eval``.

Not reproduced: sha1sum verification (CRDS checks it on load; the files here are trusted as
synced) and observatory-specific header "hooks" (JWST defines none).
"""

from __future__ import annotations

import ast
import bisect
import datetime as _dt
import fnmatch
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from typing import Mapping as _MappingABC

from ..errors import ReferenceFileError

__all__ = [
    "Mapping", "Selector", "MatchSelector", "UseAfterSelector", "SelectVersionSelector",
    "VersionAfterSelector", "ClosestTimeSelector", "GeometricallyNearestSelector",
    "NoMatch", "parse_mapping", "parse_mapping_text", "condition_value", "UNDEFINED",
    "NOT_APPLICABLE", "OMIT", "evaluate_expression",
]

UNDEFINED = "UNDEFINED"
NOT_APPLICABLE = "N/A"
OMIT = "OMIT"

_NUMBER_RE = re.compile(r"^([-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?|[-+]?[0-9]+\.)$")
_DONT_CARE = {"N/A", "NOT APPLICABLE", "NOT_APPLICABLE", "()", "-2147483648.0"}


def condition_value(value: Any) -> str:
    """The CRDS normal form of one parameter value (see the module notes)."""
    if value is None:
        return UNDEFINED
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "T" if value else "F"
    text = str(value).strip().upper()
    if _NUMBER_RE.match(text):
        text = str(float(text))
    if text in _DONT_CARE:
        return NOT_APPLICABLE
    if text == "ANY":
        return "*"
    if text == "4294967295.0":
        return "-1.0"
    if text in ("T", "TRUE"):
        return "T"
    if text in ("F", "FALSE"):
        return "F"
    return text


def _condition_key_field(item: Any) -> str:
    """Condition one field of a Match key (rule side)."""
    if isinstance(item, (tuple, list)):
        return "|".join(condition_value(x) for x in item)
    if isinstance(item, str):
        text = item.strip()
        if (text.startswith("{") and text.endswith("}")) or (
                text.startswith("(") and text.endswith(")")):
            return text
        if "|" in text and not _esoteric(text):
            return "|".join(condition_value(p) for p in text.split("|") if p.strip())
        return condition_value(text)
    return condition_value(item)


def _esoteric(key: str) -> bool:
    upper = key.upper()
    return (upper.startswith(("{", "(", "#")) and upper.endswith(("}", ")", "#"))) \
        or upper.startswith("BETWEEN") or upper.startswith("NOT ")


def _shorten(values: list[str], limit: int = 12) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f", ... ({len(values) - limit} more)" if len(values) > limit else "")


class NoMatch(LookupError):
    """Internal: a selector found nothing for the exposure; ``reason`` says why."""

    def __init__(self, reason: str, culprits: tuple[str, ...] = ()):
        super().__init__(reason)
        self.reason = reason
        self.culprits = culprits


# -- matchers ----------------------------------------------------------------------------------
# A matcher maps a conditioned exposure value to 1 (match), 0 (don't care) or -1 (no match).

def _base(key: str, test: Callable[[str], bool]) -> Callable[[str], int]:
    def match(value: str) -> int:
        if value == key or value == "*":
            return 1
        if value == NOT_APPLICABLE:
            return 0
        return 1 if test(value) else -1
    return match


def _float_or_none(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _inequality(expr: str) -> Callable[[str], bool]:
    found = re.match(r"^([><]=?)\s*([-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?)$", expr.strip())
    if not found:
        raise ValueError(f"invalid relation {expr!r}")
    op, limit = found.group(1), float(found.group(2))
    compare = {">": float.__gt__, "<": float.__lt__, ">=": float.__ge__, "<=": float.__le__}[op]

    def test(value: str) -> bool:
        number = _float_or_none(value)
        return number is not None and compare(number, limit)
    return test


def _binary(key: str, op: str, left, right) -> Callable[[str], int]:
    if op == " AND ":
        return _base(key, lambda v: left(v) == 1 and right(v) == 1)
    return _base(key, lambda v: left(v) == 1 or right(v) == 1)


def make_matcher(key: str) -> Callable[[str], int]:
    """The matcher for one conditioned Match key field."""
    if key == NOT_APPLICABLE:
        return lambda value: 0
    if key.startswith("(") and key.endswith(")"):
        regex = re.compile(key[1:-1])
        return _base(key, lambda v: regex.match(v) is not None)
    if key.startswith("{") and key.endswith("}"):
        literal = key[1:-1]
        return _base(key, lambda v: v == literal)
    if key.startswith("#") and key.endswith("#"):
        inner = key[1:-1].strip().upper()
        for op in (" AND ", " OR "):
            if op in inner:
                return _binary(key, op, *(make_matcher(p.strip()) for p in inner.split(op, 1)))
        return make_matcher(inner)
    upper = key.upper()
    if upper.startswith("BETWEEN"):
        parts = key.split()
        if len(parts) != 3 or float(parts[1]) > float(parts[2]):
            raise ValueError(f"invalid relation {key!r}: use 'between <low> <high>'")
        low, high = float(parts[1]), float(parts[2])
        return _base(key, lambda v: (n := _float_or_none(v)) is not None and low <= n < high)
    if upper.startswith("NOT "):
        inner_match = make_matcher(key[4:].strip())
        return lambda v: {1: -1, -1: 1, 0: 0}[inner_match(v)]
    if "|" in key or "*" in key:
        parts = [p.strip() for p in key.split("|") if p.strip()]
        return _base(key, lambda v: any(fnmatch.fnmatchcase(v, p) for p in parts))
    if key.startswith((">", "<")):
        return _base(key, _inequality(key))
    return _base(key, lambda v: False)


# -- selectors ----------------------------------------------------------------------------------

class Selector:
    """Base of the selector tree: ``choose(header)`` returns a file name (or N/A / OMIT).

    Parameters
    ----------
    parameters : tuple of str
        Parameter (parkey) names this level selects on.
    items : list of (key, choice)
        The rules, in file order; a choice is a file name or a nested :class:`Selector`.
    header : dict
        The rmap header (substitutions, raise_ambiguous...).
    where : str
        The mapping's name, for messages.
    """

    kind = "Selector"

    def __init__(self, parameters, items, header, where):
        self.parameters = tuple(parameters)
        self.header = header
        self.where = where
        self.items = list(items)

    def choose(self, header: _MappingABC[str, str], raw: _MappingABC[str, Any]) -> Any:
        raise NotImplementedError

    def _resolve(self, choice, header, raw):
        return choice.choose(header, raw) if isinstance(choice, Selector) else choice

    def reference_names(self) -> list[str]:
        """All file names reachable from this selector (sorted, special values dropped)."""
        names = set()
        for _, choice in self.items:
            if isinstance(choice, Selector):
                names.update(choice.reference_names())
            elif isinstance(choice, str) and choice.upper() not in (NOT_APPLICABLE, OMIT):
                names.add(choice)
        return sorted(names)

    def __repr__(self) -> str:
        return f"{self.kind}({self.parameters!r}, {len(self.items)} rules)"


@dataclass
class _Case:
    raw_key: tuple
    key: tuple[str, ...]
    matchers: tuple[Callable[[str], int], ...]
    choice: Any


class MatchSelector(Selector):
    """Exact / any-of / wildcard matching on a tuple of parameters, most specific rule first."""

    kind = "Match"

    def __init__(self, parameters, items, header, where):
        super().__init__(parameters, items, header, where)
        substitutions = header.get("substitutions") or {}
        self.cases: list[_Case] = []
        seen: dict[tuple, int] = {}
        for raw_key, choice in self.items:
            key = raw_key if isinstance(raw_key, tuple) else (raw_key,)
            if len(key) != len(self.parameters):
                raise ReferenceFileError(
                    f"{where}: Match key {raw_key!r} has {len(key)} fields but the parkey for "
                    f"this level names {len(self.parameters)}: {', '.join(self.parameters)}")
            fields = list(key)
            for parkey, table in substitutions.items():
                if parkey in self.parameters:
                    i = self.parameters.index(parkey)
                    if isinstance(fields[i], str) and fields[i] in table:
                        new = table[fields[i]]
                        fields[i] = tuple(new) if isinstance(new, list) else new
            conditioned = tuple(_condition_key_field(f) for f in fields)
            try:
                matchers = tuple(make_matcher(f) for f in conditioned)
            except (ValueError, re.error) as exc:
                raise ReferenceFileError(f"{where}: invalid Match key {raw_key!r} ({exc})") from exc
            if conditioned in seen:
                warnings.warn(f"{where}: Match key {raw_key!r} appears twice after conditioning; "
                              "the later rule is used", stacklevel=2)
                self.cases.pop(seen[conditioned])
                seen = {c.key: i for i, c in enumerate(self.cases)}
            seen[conditioned] = len(self.cases)
            self.cases.append(_Case(key, conditioned, matchers, choice))
        flag = str(header.get("raise_ambiguous", "")).strip().upper()
        if flag:
            self.raise_ambiguous = flag in ("TRUE", "1", "T", "YES")
        else:
            self.raise_ambiguous = str(header.get("observatory", "")).strip().upper() != "HST"

    def ranked(self, header: _MappingABC[str, str]) -> list[tuple[int, list[_Case]]]:
        """Surviving cases grouped by weight, best (most matching fields) first."""
        values = [header.get(p, UNDEFINED) for p in self.parameters]
        groups: dict[int, list[_Case]] = {}
        for case in self.cases:
            weight = 0
            for matcher, value in zip(case.matchers, values, strict=True):
                status = matcher(value)
                if status < 0:
                    break
                weight += status
            else:
                groups.setdefault(weight, []).append(case)
        return sorted(groups.items(), key=lambda item: -item[0])

    def culprits(self, header: _MappingABC[str, str]) -> tuple[str, ...]:
        """Parameters whose exposure value no rule accepts at all (the likely cause of no match)."""
        out = []
        for i, parkey in enumerate(self.parameters):
            value = header.get(parkey, UNDEFINED)
            if not any(case.matchers[i](value) >= 0 for case in self.cases):
                out.append(parkey)
        return tuple(out)

    def known_values(self, parkey: str) -> list[str]:
        """The values the rules name for ``parkey`` (for messages)."""
        i = self.parameters.index(parkey)
        values: set[str] = set()
        for case in self.cases:
            field_ = case.key[i]
            if _esoteric(field_):
                values.add(field_)
            else:
                values.update(p for p in field_.split("|") if p)
        return sorted(values)

    def choose(self, header, raw):
        ranked = self.ranked(header)
        if not ranked:
            culprits = self.culprits(header)
            if culprits:
                detail = "; ".join(
                    (f"{p} is not set" if header.get(p, UNDEFINED) == UNDEFINED else
                     f"{p} = {header.get(p)!r} is not among the values the rules know")
                    + f" ({_shorten(self.known_values(p))})" for p in culprits)
            else:
                detail = ("each value is known to some rule, but none matches this "
                          "combination of " + ", ".join(self.parameters))
            raise NoMatch(f"{self.where}: no rule matches: {detail}", culprits)
        last: NoMatch | None = None
        for _weight, cases in ranked:
            if len(cases) > 1:
                if self.raise_ambiguous:
                    raise ReferenceFileError(
                        f"{self.where}: ambiguous rules: {len(cases)} Match cases fit equally "
                        f"well ({', '.join(repr(c.raw_key) for c in cases)}) for "
                        + ", ".join(f"{p} = {header.get(p, UNDEFINED)!r}" for p in self.parameters))
                choice = _merge([c.choice for c in cases], self.where)
            else:
                choice = cases[0].choice
            try:
                return self._resolve(choice, header, raw)
            except NoMatch as exc:
                last = exc
        assert last is not None
        raise last


def _merge(choices: list, where: str):
    if all(isinstance(c, UseAfterSelector) for c in choices):
        dates: dict[_dt.datetime, Any] = {}
        for sel in choices:
            for when, name in sel.entries:
                if when not in dates or str(name) > str(dates[when]):
                    dates[when] = name
        merged = UseAfterSelector.__new__(UseAfterSelector)
        Selector.__init__(merged, choices[0].parameters, [], choices[0].header, where)
        merged.entries = sorted(dates.items())
        merged.keys = [d for d, _ in merged.entries]
        return merged
    if all(isinstance(c, str) for c in choices):
        if len(set(choices)) == 1:
            return choices[0]
    raise ReferenceFileError(f"{where}: equally good rules lead to different results "
                             f"{choices!r} and cannot be merged")


_DATE_RE = re.compile(
    r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?$")


def parse_datetime(text: str) -> _dt.datetime:
    """Parse ``YYYY-MM-DD[ HH:MM[:SS[.fff]]]`` (also ``T`` or ``/`` separated)."""
    found = _DATE_RE.match(str(text).strip())
    if not found:
        raise ValueError(f"not a date/time: {text!r}")
    y, mo, d, h, mi, s, frac = found.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    return _dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), micro)


class UseAfterSelector(Selector):
    """The rule with the latest date <= the observation date and time."""

    kind = "UseAfter"

    def __init__(self, parameters, items, header, where):
        super().__init__(parameters, items, header, where)
        entries = []
        for key, choice in self.items:
            try:
                entries.append((parse_datetime(key), choice))
            except (ValueError, TypeError) as exc:
                raise ReferenceFileError(f"{where}: invalid UseAfter date {key!r} ({exc})") from exc
        entries.sort(key=lambda e: e[0])
        self.entries = entries
        self.keys = [e[0] for e in entries]

    def observation_time(self, raw) -> _dt.datetime:
        parts = []
        for parkey in self.parameters:
            value = raw.get(parkey)
            if value is None or str(value).strip() in ("", UNDEFINED):
                raise NoMatch(f"{self.where}: {parkey} is not set, so the UseAfter date "
                              "cannot be compared", (parkey,))
            parts.append(str(value).strip())
        text = " ".join(parts)
        try:
            return parse_datetime(text)
        except ValueError as exc:
            raise NoMatch(f"{self.where}: observation date/time {text!r} "
                          f"({' + '.join(self.parameters)}) cannot be read",
                          self.parameters) from exc

    def choose(self, header, raw):
        when = self.observation_time(raw)
        index = bisect.bisect_right(self.keys, when) - 1
        if index < 0:
            first = self.keys[0].isoformat(" ") if self.keys else "none"
            raise NoMatch(f"{self.where}: no rule is in use on {when.isoformat(' ')} "
                          f"(earliest USEAFTER date: {first})", self.parameters)
        return self._resolve(self.entries[index][1], header, raw)


def _version_tuple(text: str) -> tuple[int, ...]:
    nums = re.findall(r"\d+", str(text))
    if not nums:
        raise ValueError(f"not a version: {text!r}")
    parts = tuple(int(n) for n in nums[:3])
    return parts + (0,) * (3 - len(parts))


class VersionAfterSelector(Selector):
    """Like UseAfter on a software version (``'1.2.3'``): the greatest version <= the exposure's."""

    kind = "VersionAfter"

    def __init__(self, parameters, items, header, where):
        super().__init__(parameters, items, header, where)
        try:
            self.entries = sorted(((_version_tuple(k), c) for k, c in self.items),
                                  key=lambda e: e[0])
        except ValueError as exc:
            raise ReferenceFileError(f"{where}: {exc}") from exc

    def choose(self, header, raw):
        text = ".".join(str(raw.get(p, UNDEFINED)) for p in self.parameters)
        try:
            version = _version_tuple(text)
        except ValueError as exc:
            raise NoMatch(f"{self.where}: {exc}", self.parameters) from exc
        keys = [e[0] for e in self.entries]
        index = bisect.bisect_right(keys, version) - 1
        if index < 0:
            raise NoMatch(f"{self.where}: no rule for version {text}", self.parameters)
        return self._resolve(self.entries[index][1], header, raw)


def _relation(text: str):
    """``'<5'``, ``'= 4.5'``, ``'default'`` -> sortable (version, relation)."""
    text = str(text).strip()
    if text.replace("=", "").strip().lower() == "default":
        return (float("inf"), "=")
    found = re.match(r"^([<=]=?)?\s*(.+)$", text)
    op = (found.group(1) or "=").replace("==", "=")
    try:
        value = ast.literal_eval(found.group(2).strip())
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"invalid version relation {text!r}") from exc
    return (value, op)


class SelectVersionSelector(Selector):
    """Relations on a version number: the first of the sorted relations the version satisfies.

    ``'<3.1'`` applies to versions below 3.1, ``'=5'`` (or ``'5'``) to versions up to 5,
    ``'default'`` to everything else, as in CRDS.
    """

    kind = "SelectVersion"

    def __init__(self, parameters, items, header, where):
        super().__init__(parameters, items, header, where)
        try:
            self.entries = sorted(((_relation(k), c) for k, c in self.items), key=lambda e: e[0])
        except (ValueError, TypeError) as exc:
            raise ReferenceFileError(f"{where}: {exc}") from exc

    def choose(self, header, raw):
        value = raw.get(self.parameters[0], UNDEFINED) if self.parameters else UNDEFINED
        if str(value).strip().lower() == "default":
            version = float("inf")
        else:
            try:
                version = ast.literal_eval(str(value).strip())
            except (ValueError, SyntaxError):
                raise NoMatch(f"{self.where}: {self.parameters[0]} = {value!r} is not a "
                              "version number", self.parameters) from None
        for (limit, op), choice in self.entries:
            try:
                before = (limit, op) < (version, "=")
            except TypeError:
                continue
            if not before:
                return self._resolve(choice, header, raw)
        raise NoMatch(f"{self.where}: no version relation applies to {value!r}", self.parameters)


class ClosestTimeSelector(UseAfterSelector):
    """The rule whose date is nearest to the observation time (before or after)."""

    kind = "ClosestTime"

    def choose(self, header, raw):
        when = self.observation_time(raw)
        if not self.entries:
            raise NoMatch(f"{self.where}: empty ClosestTime rules", self.parameters)
        best = min(self.entries, key=lambda e: abs((e[0] - when).total_seconds()))
        return self._resolve(best[1], header, raw)


class GeometricallyNearestSelector(Selector):
    """The rule whose numeric key is nearest to the exposure value."""

    kind = "GeometricallyNearest"

    def __init__(self, parameters, items, header, where):
        super().__init__(parameters, items, header, where)
        try:
            self.entries = sorted(((float(k), c) for k, c in self.items), key=lambda e: e[0])
        except (TypeError, ValueError) as exc:
            raise ReferenceFileError(f"{where}: GeometricallyNearest keys must be numbers "
                                     f"({exc})") from exc

    def choose(self, header, raw):
        value = _float_or_none(str(raw.get(self.parameters[0], UNDEFINED)))
        if value is None or not self.entries:
            raise NoMatch(f"{self.where}: {self.parameters[0]} is not a number", self.parameters)
        best = min(self.entries, key=lambda e: abs(e[0] - value))
        return self._resolve(best[1], header, raw)


SELECTORS: dict[str, type[Selector]] = {
    "Match": MatchSelector, "UseAfter": UseAfterSelector, "SelectVersion": SelectVersionSelector,
    "VersionAfter": VersionAfterSelector, "ClosestTime": ClosestTimeSelector,
    "GeometricallyNearest": GeometricallyNearestSelector,
}


# -- the mapping file ------------------------------------------------------------------------------

@dataclass
class Mapping:
    """One parsed mapping file.

    Attributes
    ----------
    name : str
        File name (``jwst_nircam_dark_0042.rmap``).
    kind : str
        ``"pipeline"`` (.pmap), ``"instrument"`` (.imap) or ``"reference"`` (.rmap).
    header : dict
        The ``header`` dict as written.
    selector : dict or Selector
        A plain ``{key: file}`` dict for .pmap/.imap; a :class:`Selector` tree for .rmap.
    comment : str or None
        The optional ``comment`` string.
    path : Path or None
        Where it was read from.
    """

    name: str
    kind: str
    header: dict
    selector: Any
    comment: str | None = None
    path: Path | None = None
    _exprs: dict = field(default_factory=dict, repr=False)

    @property
    def parkeys(self) -> tuple[str, ...]:
        """All selection parameters, flattened over the selector levels."""
        out: list[str] = []
        for level in _parkey_levels(self.header.get("parkey", ())):
            out.extend(level)
        return tuple(out)

    def expression(self, key: str, default: str):
        """The compiled header expression ``key`` (``rmap_relevance``...), cached."""
        if key not in self._exprs:
            text = self.header.get(key, default)
            self._exprs[key] = compile_expression(str(text), self.name, key)
        return self._exprs[key]

    def select(self, header: _MappingABC[str, str], raw: _MappingABC[str, Any]) -> str:
        """Choose from an rmap for conditioned exposure values ``header`` (raw values in ``raw``).

        Returns the file name or ``"N/A"``; raises :class:`NoMatch` when nothing fits.
        """
        if self.kind != "reference":
            raise TypeError(f"{self.name} is a {self.kind} mapping, not an rmap")
        if evaluate_expression(self.expression("rmap_omit", "False"), header):
            return NOT_APPLICABLE
        if not evaluate_expression(self.expression("rmap_relevance", "ALWAYS"), header):
            return NOT_APPLICABLE
        relevance = self.header.get("parkey_relevance") or {}
        if relevance:
            header = dict(header)
            for parkey in relevance:
                expr = _cached_parkey_expr(self, parkey, relevance[parkey])
                if not evaluate_expression(expr, header):
                    header[parkey.upper()] = NOT_APPLICABLE
        try:
            choice = self.selector.choose(header, raw)
        except NoMatch:
            if str(self.header.get("reffile_required", "")).strip().upper() == "NO":
                return NOT_APPLICABLE
            raise
        if not isinstance(choice, str):
            raise ReferenceFileError(f"{self.name}: the rules give {choice!r}, not a file name")
        if choice.strip().upper() in (NOT_APPLICABLE, OMIT, "NOT FOUND N/A"):
            return NOT_APPLICABLE
        return choice.strip()


def _cached_parkey_expr(mapping: Mapping, parkey: str, text: str):
    key = f"parkey_relevance:{parkey}"
    if key not in mapping._exprs:
        mapping._exprs[key] = compile_expression(str(text), mapping.name, key)
    return mapping._exprs[key]


def _parkey_levels(parkey) -> list[tuple[str, ...]]:
    """``('A', 'B')`` (one level) or ``(('A', 'B'), ('DATE', 'TIME'))`` -> list of levels."""
    if not isinstance(parkey, (tuple, list)):
        return [(str(parkey),)]
    if parkey and all(isinstance(p, str) for p in parkey):
        return [tuple(p.upper() for p in parkey)]
    return [tuple(str(p).upper() for p in level) if isinstance(level, (tuple, list))
            else (str(level).upper(),) for level in parkey]


class _RawSelector:
    """A parsed ``Name({...})`` call, instantiated once the header (parkeys) is known."""

    def __init__(self, name: str, items: list, line: int):
        self.name = name
        self.items = items
        self.line = line


def _build(raw: _RawSelector, levels: list, depth: int, header: dict, where: str) -> Selector:
    if depth >= len(levels):
        raise ReferenceFileError(
            f"{where}, line {raw.line}: {raw.name} is nested {depth + 1} levels deep but the "
            f"header parkey names only {len(levels)} level(s)")
    items = []
    for key, value in raw.items:
        if isinstance(value, _RawSelector):
            value = _build(value, levels, depth + 1, header, where)
        elif not isinstance(value, (str, tuple, dict)):
            raise ReferenceFileError(f"{where}: rule {key!r} gives {value!r}, not a file name")
        items.append((key, value))
    return SELECTORS[raw.name](levels[depth], items, header, where)


_ALLOWED_STATEMENTS = ("header", "selector", "comment")


def _literal(node: ast.AST, where: str) -> Any:
    """Turn a literal expression node into a value; reject anything that is not data."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool,
                                                                  type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and \
            isinstance(node.operand, ast.Constant) and \
            isinstance(node.operand.value, (int, float)) and \
            not isinstance(node.operand.value, bool):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e, where) for e in node.elts)
    if isinstance(node, ast.List):
        return [_literal(e, where) for e in node.elts]
    if isinstance(node, ast.Dict):
        return _dict_items(node, where, as_dict=True)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id in SELECTORS:
        if node.keywords or len(node.args) != 1 or not isinstance(node.args[0], ast.Dict):
            raise ReferenceFileError(
                f"{where}, line {node.lineno}: {node.func.id}(...) must wrap exactly one dict")
        return _RawSelector(node.func.id, _dict_items(node.args[0], where, as_dict=False),
                            node.lineno)
    what = type(node).__name__
    if isinstance(node, ast.Call):
        what = f"call of {ast.unparse(node.func)}()"
    elif isinstance(node, ast.Name):
        what = f"name {node.id!r}"
    raise ReferenceFileError(
        f"{where}, line {getattr(node, 'lineno', '?')}: {what} is not allowed in a CRDS mapping "
        "(only literals and Match/UseAfter/SelectVersion/... selectors)")


def _dict_items(node: ast.Dict, where: str, as_dict: bool):
    items = []
    seen: dict = {}
    for key_node, value_node in zip(node.keys, node.values, strict=True):
        if key_node is None:
            raise ReferenceFileError(f"{where}, line {node.lineno}: '**' is not allowed")
        key = _literal(key_node, where)
        value = _literal(value_node, where)
        try:
            hash(key)
        except TypeError:
            raise ReferenceFileError(
                f"{where}, line {key_node.lineno}: dict key {key!r} is not hashable") from None
        if key in seen:
            warnings.warn(f"{where}, line {key_node.lineno}: key {key!r} appears more than "
                          "once; the later entry is used", stacklevel=3)
            items = [(k, v) for k, v in items if k != key]
        seen[key] = True
        items.append((key, value))
    return dict(items) if as_dict else items


def parse_mapping_text(text: str, name: str = "<mapping>", path: Path | None = None) -> Mapping:
    """Parse the text of a CRDS mapping (no code is executed).

    Parameters
    ----------
    text : str
        File contents.
    name : str
        Name used in messages and as :attr:`Mapping.name` when the header has none.
    path : Path, optional
        Where the text came from.

    Raises
    ------
    ReferenceFileError
        On syntax that is not a CRDS mapping, naming the file and line.
    """
    try:
        tree = ast.parse(text, filename=name, mode="exec")
    except SyntaxError as exc:
        raise ReferenceFileError(f"{name}, line {exc.lineno}: not valid CRDS mapping syntax "
                                 f"({exc.msg})") from exc
    values: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and \
                isinstance(stmt.value.value, str):
            continue  # a docstring
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and \
                isinstance(stmt.targets[0], ast.Name) and \
                stmt.targets[0].id in _ALLOWED_STATEMENTS:
            values[stmt.targets[0].id] = _literal(stmt.value, name)
            continue
        raise ReferenceFileError(
            f"{name}, line {stmt.lineno}: only 'header = {{...}}', 'selector = ...' and "
            f"'comment = ...' may appear in a CRDS mapping, not {type(stmt).__name__}")
    header = values.get("header")
    if not isinstance(header, dict):
        raise ReferenceFileError(f"{name}: no 'header = {{...}}' dict")
    if "selector" not in values:
        raise ReferenceFileError(f"{name}: no 'selector = ...'")
    if "parkey" not in header:
        raise ReferenceFileError(f"{name}: header has no 'parkey' entry")
    mapping_name = str(header.get("name") or name)
    kind = str(header.get("mapping", "")).strip().lower()
    if kind not in ("pipeline", "instrument", "reference"):
        suffix = Path(name).suffix.lower()
        kind = {".pmap": "pipeline", ".imap": "instrument", ".rmap": "reference"}.get(suffix, "")
        if not kind:
            raise ReferenceFileError(f"{name}: header 'mapping' must be PIPELINE, INSTRUMENT or "
                                     f"REFERENCE, got {header.get('mapping')!r}")
    selector = values["selector"]
    if kind == "reference":
        if isinstance(selector, _RawSelector):
            selector = _build(selector, _parkey_levels(header["parkey"]), 0, header, name)
        elif isinstance(selector, dict):
            # An rmap may give a plain dict for a single-parameter exact match.
            selector = MatchSelector(_parkey_levels(header["parkey"])[0], list(selector.items()),
                                     header, name)
        else:
            raise ReferenceFileError(f"{name}: selector must be Match(...), UseAfter(...) or "
                                     "another selector")
    else:
        if not isinstance(selector, dict):
            raise ReferenceFileError(f"{name}: the selector of a {kind} mapping must be a dict")
        selector = {str(k).strip().upper(): (str(v).strip() if isinstance(v, str) else v)
                    for k, v in selector.items()}
    comment = values.get("comment")
    return Mapping(mapping_name, kind, header, selector,
                   comment if isinstance(comment, str) else None, path)


def parse_mapping(path) -> Mapping:
    """Read and parse a mapping file (see :func:`parse_mapping_text`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReferenceFileError(f"{path}: cannot read CRDS mapping ({exc})") from exc
    mapping = parse_mapping_text(text, path.name, path)
    return mapping


# -- header expressions (rmap_relevance, rmap_omit, parkey_relevance) ------------------------------

_CMP = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
    ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
}


def compile_expression(text: str, where: str, what: str) -> ast.AST:
    """Parse a header expression once; reject anything but comparisons and boolean logic."""
    source = text.strip()
    if source.upper() == "ALWAYS":
        source = "True"
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ReferenceFileError(f"{where}: header {what} {text!r} is not a valid expression "
                                 f"({exc.msg})") from exc
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp,
                                 ast.Not, ast.Compare, ast.Name, ast.Attribute, ast.Load,
                                 ast.Constant, ast.Tuple, ast.List, ast.Set, *_CMP)):
            raise ReferenceFileError(f"{where}: header {what} {text!r} uses "
                                     f"{type(node).__name__}, which is not allowed")
    return tree


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    raise ReferenceFileError(f"unsupported name in expression: {ast.dump(node)}")


def evaluate_expression(tree: ast.AST, header: _MappingABC[str, str]) -> Any:
    """Evaluate a compiled header expression over conditioned exposure values.

    Names (``META.EXPOSURE.TYPE`` or ``EXP_TYPE``) resolve to the exposure's conditioned value,
    ``UNDEFINED`` when absent; ``True``/``False`` are constants.
    """
    def value(node):
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.Name, ast.Attribute)):
            name = _dotted(node)
            if name in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[name]
            return header.get(name.upper(), UNDEFINED)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return tuple(value(e) for e in node.elts)
        if isinstance(node, ast.UnaryOp):
            return not value(node.operand)
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                return all(value(v) for v in node.values)
            return any(value(v) for v in node.values)
        if isinstance(node, ast.Compare):
            left = value(node.left)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = value(comp)
                try:
                    if not _CMP[type(op)](left, right):
                        return False
                except TypeError:
                    return False
                left = right
            return True
        raise ReferenceFileError(f"unsupported expression node {type(node).__name__}")
    return value(tree)
