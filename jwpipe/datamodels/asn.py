"""Association (ASN) files: JSON lists of products and their member exposures."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputFileError

__all__ = ["Member", "Product", "Association", "load_asn", "write_asn", "singleton"]

LEVEL2_TYPES = ("science", "background", "imprint", "selfcal", "sourcecat", "segmap",
                "direct_image", "target_acquisition")
LEVEL3_TYPES = ("science", "background", "psf")


@dataclass
class Member:
    """One exposure of a product. ``expname`` is resolved against the ASN file's folder."""

    expname: str
    exptype: str
    extra: dict = field(default_factory=dict)

    def path(self, base: Path) -> Path:
        p = Path(self.expname)
        return p if p.is_absolute() else base / p


@dataclass
class Product:
    name: str
    members: list[Member]

    def by_type(self, exptype: str) -> list[Member]:
        return [m for m in self.members if m.exptype == exptype]


@dataclass
class Association:
    """An association: ``asn_type``, ``asn_id``, ``asn_pool`` and its products."""

    asn_type: str
    asn_id: str
    products: list[Product]
    asn_pool: str = "none"
    extra: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def base(self) -> Path:
        return self.path.parent if self.path else Path(".")

    def to_dict(self) -> dict:
        out = {"asn_type": self.asn_type, "asn_id": self.asn_id, "asn_pool": self.asn_pool}
        out.update(self.extra)
        out["products"] = [
            {"name": p.name,
             "members": [{"expname": m.expname, "exptype": m.exptype, **m.extra}
                         for m in p.members]}
            for p in self.products
        ]
        return out


def load_asn(path) -> Association:
    """Read an ASN JSON file, checking the keys every consumer relies on."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read association ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: not a valid association JSON file ({exc})") from exc
    if not isinstance(raw, dict):
        raise InputFileError(f"{path}: an association must be a JSON object")
    for key in ("asn_type", "asn_id", "products"):
        if key not in raw:
            raise InputFileError(f"{path}: association has no '{key}' key")
    products = []
    for i, prod in enumerate(raw["products"]):
        if "members" not in prod:
            raise InputFileError(f"{path}: product {i} has no 'members'")
        members = []
        for j, mem in enumerate(prod["members"]):
            if "expname" not in mem or "exptype" not in mem:
                raise InputFileError(
                    f"{path}: product {i} member {j} needs both 'expname' and 'exptype'")
            extra = {k: v for k, v in mem.items() if k not in ("expname", "exptype")}
            members.append(Member(mem["expname"], str(mem["exptype"]).lower(), extra))
        products.append(Product(prod.get("name", path.stem), members))
    extra = {k: v for k, v in raw.items()
             if k not in ("asn_type", "asn_id", "asn_pool", "products")}
    return Association(raw["asn_type"], raw["asn_id"], products, raw.get("asn_pool", "none"),
                       extra, path)


def write_asn(asn: Association, path) -> Path:
    """Write an association as JSON (atomically)."""
    from .fits_io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(asn.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def singleton(path, asn_type: str = "image2") -> Association:
    """Wrap a single exposure file as a one-product association (as the reference does)."""
    path = Path(path)
    name = path.name
    for suffix in ("_uncal", "_rate", "_rateints", "_cal", "_calints", "_ramp"):
        if path.stem.endswith(suffix):
            name = path.stem[: -len(suffix)]
            break
    return Association(asn_type, "singleton", [Product(name, [Member(str(path), "science")])],
                       path=None)
