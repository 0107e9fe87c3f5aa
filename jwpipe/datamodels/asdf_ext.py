"""The ``ASDF`` FITS extension: the metadata tree (and gwcs WCS) serialised as ASDF bytes.

Arrays and tables stored as FITS extensions are referenced (``source: fits:SCI,1``), not
duplicated, as the JWST data-model convention requires; an :class:`ArrayRef` marks such a reference
anywhere in the tree (``spec[0].spec_table`` of a spectral product). A tree of plain values (every
stage-1 product) is written directly as ASDF-tagged YAML: loading the ``asdf`` library with every
installed extension costs seconds, more than the rest of a small exposure's processing. Trees
holding objects (a gwcs WCS) go through the ``asdf`` library.
"""

from __future__ import annotations

import io

import numpy as np

__all__ = ["asdf_bytes", "ArrayRef"]

_NDARRAY_TAG = "tag:stsci.edu:asdf/core/ndarray-1.1.0"
_PLAIN = (str, int, float, bool, type(None))


def _is_plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return isinstance(value, _PLAIN + (np.generic,))


def _to_python(value):
    if isinstance(value, ArrayRef):
        return ArrayRef(_to_python(dict(value)))
    if isinstance(value, dict):
        return {k: _to_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_python(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class _Root(dict):
    pass


class ArrayRef(dict):
    """An ``ndarray`` node whose data lives in a FITS extension (``source``, ``datatype``,
    ``byteorder``, ``shape`` as in the ASDF ndarray schema)."""


def _yaml_bytes(tree: dict) -> bytes:
    import yaml

    from .. import __version__

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(
        _Root, lambda d, v: d.represent_mapping("!core/asdf-1.1.0", dict(v)))
    Dumper.add_representer(
        ArrayRef, lambda d, v: d.represent_mapping("!core/ndarray-1.1.0", dict(v)))
    root = _Root(asdf_library={"name": "jwpipe", "version": __version__,
                               "author": "jwpipe developers", "homepage": ""})
    root.update(tree)
    text = yaml.dump(root, Dumper=Dumper, explicit_start=True, explicit_end=True,
                     version=(1, 1), tags={"!": "tag:stsci.edu:asdf/"}, sort_keys=False,
                     default_flow_style=False, width=100)
    # PyYAML writes the %YAML directive itself; ASDF files start with their own two comments.
    text = text.replace("asdf_library:\n", "asdf_library: !core/software-1.0.0\n", 1)
    return ("#ASDF 1.0.0\n#ASDF_STANDARD 1.6.0\n" + text).encode("utf-8")


def asdf_bytes(meta: dict, arrays: dict, extra: dict) -> bytes:
    """Serialise the tree: ``meta``, array references and ``extra`` top-level entries."""
    if _is_plain(meta) and _is_plain(extra):
        tree = {k: _to_python(v) for k, v in extra.items()}
        tree["meta"] = _to_python(meta)
        for name, ref in arrays.items():
            tree[name] = ArrayRef(ref)
        return _yaml_bytes(tree)
    import asdf
    from asdf.tagged import TaggedDict

    def tag_refs(value):
        if isinstance(value, ArrayRef):
            return TaggedDict(dict(value), _NDARRAY_TAG)
        if type(value) is dict:  # tagged and other mapping types are kept as they are
            return {k: tag_refs(v) for k, v in value.items()}
        if isinstance(value, list):
            return [tag_refs(v) for v in value]
        return value

    tree = {k: tag_refs(v) for k, v in extra.items()}
    tree["meta"] = meta
    for name, ref in arrays.items():
        tree[name] = TaggedDict(ref, _NDARRAY_TAG)
    buf = io.BytesIO()
    asdf.AsdfFile(tree).write_to(buf, all_array_storage="inline")
    return buf.getvalue()
