"""Reference files: which one an exposure needs, and reading it.

Lookup order (:func:`find_reference`): an explicit override (a file, or ``"N/A"``), then the
local CRDS cache (``$CRDS_PATH``; rules chosen by the cache's mapping files on the exposure's
keywords and observation date), fully offline. Otherwise a
:class:`~jwpipe.errors.ReferenceNotFoundError` says which keywords were used, what was searched
and how to supply the file.

Modules: :mod:`.mappings` (CRDS mapping syntax and selection rules), :mod:`.lookup` (cache
layout, context choice, overrides), :mod:`.readers` (FITS/ASDF readers, subarray cutting,
DQ_DEF translation).
"""

from __future__ import annotations

from .lookup import (
    NOT_APPLICABLE,
    CrdsCache,
    clear_caches,
    find_reference,
    reference_name_for_header,
    selection_parameters,
)
from .mappings import Mapping, parse_mapping, parse_mapping_text
from .readers import (
    REFTYPE_MODELS,
    AsdfReference,
    ReferenceFileWarning,
    cut_to_subarray,
    open_reference,
    translate_dq,
)

__all__ = [
    "NOT_APPLICABLE", "find_reference", "open_reference", "cut_to_subarray", "translate_dq",
    "reference_name_for_header", "selection_parameters", "CrdsCache", "clear_caches",
    "AsdfReference", "ReferenceFileWarning", "REFTYPE_MODELS", "Mapping", "parse_mapping",
    "parse_mapping_text",
]
