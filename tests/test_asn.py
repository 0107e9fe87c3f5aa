"""Association files."""

import json

import pytest

from jwpipe.datamodels import asn
from jwpipe.errors import InputFileError


def test_round_trip(tmp_path):
    members = [asn.Member("a_cal.fits", "science"), asn.Member("b_cal.fits", "science")]
    product = asn.Product("jw01234-o001_t001_nircam_f200w", members)
    table = asn.Association("image3", "o001", [product], "jw01234_pool")
    path = asn.write_asn(table, tmp_path / "x_asn.json")
    again = asn.load_asn(path)
    assert again.asn_type == "image3" and again.asn_id == "o001"
    assert [m.expname for m in again.products[0].by_type("science")] == ["a_cal.fits", "b_cal.fits"]
    assert again.products[0].members[0].path(again.base) == tmp_path / "a_cal.fits"
    assert json.loads(path.read_text())["products"][0]["members"][1]["exptype"] == "science"


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a valid association"),
    ('{"asn_id": "x", "products": []}', "asn_type"),
    ('{"asn_type": "image2", "asn_id": "x", "products": [{"members": [{"expname": "a"}]}]}',
     "exptype"),
])
def test_bad_associations(tmp_path, content, message):
    path = tmp_path / "bad_asn.json"
    path.write_text(content)
    with pytest.raises(InputFileError, match=message):
        asn.load_asn(path)
