"""Attribute access over the nested metadata dictionary (``model.meta.exposure.ngroups``)."""

from __future__ import annotations

import copy
from typing import Any

from .keywords import KEYWORDS

__all__ = ["Node", "flatten", "unflatten"]

_LEAVES = {row[0] for row in KEYWORDS} | {"wcs"}
_NODES = {path.rsplit(".", i)[0] for path in _LEAVES for i in range(1, path.count(".") + 1)}
# Subtrees whose children are open-ended (one entry per step or reference type, instrument rscd
# parameters...): any name below them is accepted.
_OPEN = ("ref_file", "cal_step", "rscd", "asn", "wcsinfo", "resample", "extra")


def _is_open(path: str) -> bool:
    return any(path == p or path.startswith(p + ".") for p in _OPEN)


class Node:
    """A view of one level of a metadata tree.

    Reading a known-but-absent leaf gives ``None``; reading a known subtree gives a ``Node`` that
    creates the subtree when first assigned into. Unknown names raise ``AttributeError`` so that a
    typo (``meta.exposure.ngroup``) is an error, not a silent ``None``.
    """

    __slots__ = ("_root", "_path")

    def __init__(self, root: dict, path: tuple[str, ...] = ()):
        object.__setattr__(self, "_root", root)
        object.__setattr__(self, "_path", path)

    # -- helpers -----------------------------------------------------------------------------
    def _dict(self, create: bool = False) -> dict | None:
        node = self._root
        for key in self._path:
            child = node.get(key)
            if not isinstance(child, dict):
                if not create:
                    return None
                child = node[key] = {}
            node = child
        return node

    def _full(self, name: str) -> str:
        return ".".join(self._path + (name,))

    # -- attribute protocol ------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        here = self._dict()
        if here is not None and name in here:
            value = here[name]
            return Node(self._root, self._path + (name,)) if isinstance(value, dict) else value
        full = self._full(name)
        if full in _LEAVES:
            return None
        if full in _NODES or (self._path == ("ref_file",)):
            return Node(self._root, self._path + (name,))
        if _is_open(".".join(self._path)) and self._path:
            # Open subtrees (one entry per step, reference type...) accept any name.
            return None
        raise AttributeError(f"unknown metadata attribute 'meta.{full}'")

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Node):
            value = copy.deepcopy(value.to_dict())
        self._dict(create=True)[name] = value

    def __delattr__(self, name: str) -> None:
        here = self._dict()
        if here is not None:
            here.pop(name, None)

    def __contains__(self, name: str) -> bool:
        here = self._dict()
        return here is not None and name in here

    def __iter__(self):
        here = self._dict() or {}
        return iter(here)

    def __eq__(self, other) -> bool:
        if isinstance(other, Node):
            return self.to_dict() == other.to_dict()
        return NotImplemented

    def __repr__(self) -> str:
        return f"<meta {'.'.join(self._path) or '(root)'}: {self.to_dict()!r}>"

    def get(self, dotted: str, default: Any = None) -> Any:
        """Value at a dotted path below this node, or ``default``."""
        node: Any = self._dict()
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    def set(self, dotted: str, value: Any) -> None:
        """Set the value at a dotted path below this node, creating subtrees."""
        keys = dotted.split(".")
        node = self._dict(create=True)
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[keys[-1]] = value

    def to_dict(self) -> dict:
        """The subtree as a plain dict (shared, not copied)."""
        return self._dict() or {}

    def to_flat_dict(self) -> dict[str, Any]:
        """Scalar leaves as ``{"meta.exposure.ngroups": 10, ...}`` (CRDS selection parameters)."""
        prefix = "meta." + ".".join(self._path) if self._path else "meta"
        return {f"{prefix}.{k}": v for k, v in flatten(self.to_dict()).items()}


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys; non-scalar leaves (arrays, WCS) are skipped."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flatten(value, path))
        elif isinstance(value, (str, int, float, bool)) or value is None:
            out[path] = value
    return out


def unflatten(flat: dict[str, Any]) -> dict:
    """Inverse of :func:`flatten`."""
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        keys = path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return tree
