"""CRDS mapping syntax and selection rules (jwpipe.references.mappings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jwpipe.errors import ReferenceFileError
from jwpipe.references.mappings import (
    MatchSelector,
    NoMatch,
    UseAfterSelector,
    condition_value,
    parse_mapping,
    parse_mapping_text,
)

FIXTURES = Path(__file__).parent / "data" / "crds" / "mappings" / "jwst"


def rmap(selector: str, parkey: str, **extra) -> str:
    """A minimal rmap in real CRDS syntax around ``selector``."""
    lines = [
        "header = {",
        "    'filekind' : 'DARK',",
        "    'instrument' : 'NIRCAM',",
        "    'mapping' : 'REFERENCE',",
        "    'name' : 'jwst_nircam_dark_9999.rmap',",
        "    'observatory' : 'JWST',",
        f"    'parkey' : {parkey},",
    ]
    lines += [f"    {k!r} : {v!r}," for k, v in extra.items()]
    lines += ["}", "", f"selector = {selector}", ""]
    return "\n".join(lines)


def conditioned(**values) -> dict:
    return {k.replace("__", "."): condition_value(v) for k, v in values.items()}


def choose(mapping, **values):
    raw = {k.replace("__", "."): v for k, v in values.items()}
    return mapping.select({k: condition_value(v) for k, v in raw.items()}, raw)


# -- parsing ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(FIXTURES.iterdir()), ids=lambda p: p.name)
def test_every_fixture_parses(path):
    mapping = parse_mapping(path)
    assert mapping.name == path.name
    assert mapping.kind == {".pmap": "pipeline", ".imap": "instrument",
                            ".rmap": "reference"}[path.suffix]
    if mapping.kind == "reference":
        assert mapping.selector.reference_names()
    else:
        assert all(k == k.upper() for k in mapping.selector)


def test_pmap_and_imap_are_plain_dicts():
    pmap = parse_mapping(FIXTURES / "jwst_0042.pmap")
    assert pmap.parkeys == ("META.INSTRUMENT.NAME",)
    assert pmap.selector["NIRCAM"] == "jwst_nircam_0002.imap"
    imap = parse_mapping(FIXTURES / "jwst_nircam_0002.imap")
    assert imap.selector["DISTORTION"] == "N/A"
    assert imap.header["instrument"] == "NIRCAM"


def test_rmap_structure_levels_and_comment():
    dark = parse_mapping(FIXTURES / "jwst_nircam_dark_0002.rmap")
    assert dark.parkeys == ("META.EXPOSURE.TYPE", "META.INSTRUMENT.DETECTOR",
                            "META.SUBARRAY.NAME", "META.EXPOSURE.NOUTPUTS",
                            "META.OBSERVATION.DATE", "META.OBSERVATION.TIME")
    assert isinstance(dark.selector, MatchSelector)
    assert "GENERIC" in dark.comment
    nested = [c.choice for c in dark.selector.cases]
    assert sum(isinstance(c, UseAfterSelector) for c in nested) == 5
    assert "N/A" in nested
    # substitutions apply to rule keys: GENERIC is matched as N/A, 'ANY' conditions to '*'
    keys = [c.key for c in dark.selector.cases]
    assert ("NRC_IMAGE|NRC_CORON|NRC_TSIMAGE", "NRCA2", "N/A", "N/A") in keys
    assert ("NRC_DARK", "*", "N/A", "N/A") in keys
    assert ("NRC_IMAGE|NRC_CORON|NRC_TSIMAGE", "NRCA1", "FULL", "4.0") in keys


def test_real_crds_rmap_from_the_crds_repository():
    """jwst_fgs_superbias_0004.rmap is verbatim from spacetelescope/crds."""
    sb = parse_mapping(FIXTURES / "jwst_fgs_superbias_0004.rmap")
    assert sb.header["substitutions"] == {"META.SUBARRAY.NAME": {"GENERIC": "N/A"}}
    assert choose(sb, META__INSTRUMENT__DETECTOR="GUIDER2", META__EXPOSURE__READPATT="FGSRAPID",
                  META__SUBARRAY__NAME="SUB32") == "jwst_fgs_superbias_0003.fits"
    assert choose(sb, META__INSTRUMENT__DETECTOR="GUIDER1", META__EXPOSURE__READPATT="ID",
                  META__SUBARRAY__NAME="FULL") == "jwst_fgs_superbias_0002.fits"


def test_single_field_keys_may_be_bare_strings():
    gain = parse_mapping(FIXTURES / "jwst_nircam_gain_0001.rmap")
    assert choose(gain, META__INSTRUMENT__DETECTOR="NRCA1", META__OBSERVATION__DATE="2020-01-01",
                  META__OBSERVATION__TIME="00:00:00") == "jwst_nircam_gain_0097.fits"


@pytest.mark.parametrize("text, words", [
    ("header = {'parkey': ()}\nselector = __import__('os').system('true')\n", "call of __import__"),
    ("import os\nheader = {}\nselector = {}\n", "only 'header"),
    ("header = {'parkey': (), 'x': open('f')}\nselector = {}\n", "call of open"),
    ("header = {'parkey': ()}\nselector = Match({}).__class__\n", "Attribute"),
    ("header = {'parkey': ()}\nselector = Match({('A',): lambda: 1})\n", "Lambda"),
    ("header = {'parkey': ()}\nselector = Match({**x})\n", "'**'"),
    ("header = {'parkey': ()}\nselector = x\n", "name 'x'"),
    ("header = {'parkey': ()}\nselector = Match({}, foo=1)\n", "exactly one dict"),
    ("header = {'parkey': ()\nselector = {}\n", "not valid CRDS mapping syntax"),
    ("header = {'mapping': 'REFERENCE'}\nselector = Match({})\n", "no 'parkey'"),
    ("selector = {}\n", "no 'header"),
    ("header = {'parkey': ()}\nselector = {}\nselector.update(a=1)\n", "not Expr"),
])
def test_code_is_rejected_not_executed(text, words):
    with pytest.raises(ReferenceFileError) as info:
        parse_mapping_text(text, "evil.rmap")
    assert "evil.rmap" in str(info.value)
    assert words in str(info.value)


def test_errors_name_file_and_line():
    text = rmap("Match({\n    ('A',) : UseAfter({\n        '2020-13-45 00:00:00' : 'x.fits',\n"
                "    }),\n})", "(('META.INSTRUMENT.DETECTOR',), ('META.OBSERVATION.DATE', "
                "'META.OBSERVATION.TIME'))")
    with pytest.raises(ReferenceFileError, match=r"bad\.rmap: invalid UseAfter date "
                                                 r"'2020-13-45 00:00:00'"):
        parse_mapping_text(text, "bad.rmap")
    with pytest.raises(ReferenceFileError, match=r"bad\.rmap, line 10: call of eval\(\)"):
        parse_mapping_text(rmap("Match({('A',): eval('1')})", "(('X',),)"), "bad.rmap")
    wrong_len = rmap("Match({('A', 'B') : 'x.fits'})", "(('META.INSTRUMENT.DETECTOR',),)")
    with pytest.raises(ReferenceFileError, match="has 2 fields but the parkey"):
        parse_mapping_text(wrong_len, "bad.rmap")
    too_deep = rmap("Match({('A',) : UseAfter({'2020-01-01 00:00:00' : 'x.fits'})})",
                    "(('META.INSTRUMENT.DETECTOR',),)")
    with pytest.raises(ReferenceFileError, match="nested 2 levels deep"):
        parse_mapping_text(too_deep, "bad.rmap")


def test_duplicate_keys_warn_and_last_wins():
    text = rmap("Match({\n    ('A',) : 'first.fits',\n    ('A',) : 'second.fits',\n})",
                "(('META.INSTRUMENT.DETECTOR',),)")
    with pytest.warns(UserWarning, match="appears more than once"):
        mapping = parse_mapping_text(text, "dup.rmap")
    assert choose(mapping, META__INSTRUMENT__DETECTOR="A") == "second.fits"


def test_negative_numbers_and_nested_literals():
    text = rmap("Match({(-1, 2.5, ('X', 'Y')) : 'n.fits'})",
                "(('META.A.B', 'META.A.C', 'META.A.D'),)")
    mapping = parse_mapping_text(text, "n.rmap")
    assert mapping.selector.cases[0].key == ("-1.0", "2.5", "X|Y")
    assert choose(mapping, META__A__B=-1, META__A__C="2.50", META__A__D="y") == "n.fits"


# -- conditioning ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("nrca1 ", "NRCA1"), (4, "4.0"), ("4", "4.0"), ("1.", "1.0"), (-9, "-9.0"), (True, "T"),
    (False, "F"), ("true", "T"), ("ANY", "*"), ("N/A", "N/A"), ("not applicable", "N/A"),
    (None, "UNDEFINED"), ("2022-05-14", "2022-05-14"), ("F150W2", "F150W2"),
])
def test_condition_value(value, expected):
    assert condition_value(value) == expected


# -- Match semantics -------------------------------------------------------------------------------

DARK = parse_mapping(FIXTURES / "jwst_nircam_dark_0002.rmap")


def dark(exp="NRC_IMAGE", det="NRCA2", sub="FULL", nout=4, date="2023-01-01", time="00:00:00"):
    return choose(DARK, META__EXPOSURE__TYPE=exp, META__INSTRUMENT__DETECTOR=det,
                  META__SUBARRAY__NAME=sub, META__EXPOSURE__NOUTPUTS=nout,
                  META__OBSERVATION__DATE=date, META__OBSERVATION__TIME=time)


def test_exact_match_beats_na_rule():
    # NRCA2 FULL 4 fits the exact rule (4 matching fields) and the GENERIC rule (2): exact wins
    assert dark() == "jwst_nircam_dark_0105.fits"


def test_na_rule_covers_other_subarrays():
    assert dark(sub="SUB160", nout=1) == "jwst_nircam_dark_0103.fits"


def test_alternatives_with_bar():
    assert dark(exp="NRC_TSIMAGE", sub="SUB160") == "jwst_nircam_dark_0103.fits"
    assert dark(exp="NRC_CORON", det="NRCA1", sub="SUB640", nout="1") == \
        "jwst_nircam_dark_0102.fits"


def test_any_wildcard_matches_every_value():
    assert dark(exp="NRC_DARK", det="NRCB5", sub="SUB400P", nout=1) == "jwst_nircam_dark_0106.fits"


def test_na_result_means_not_applicable():
    assert dark(exp="NRC_LED", det="NRCA3") == "N/A"


def test_numbers_match_whatever_their_spelling():
    assert dark(det="NRCA1", nout="4") == dark(det="NRCA1", nout=4.0) == \
        "jwst_nircam_dark_0201.fits"


def test_no_match_names_the_culprit():
    with pytest.raises(NoMatch) as info:
        dark(exp="NRC_GRISM")
    assert info.value.culprits == ("META.EXPOSURE.TYPE",)
    assert "'NRC_GRISM' is not among the values the rules know" in info.value.reason
    assert "NRC_IMAGE" in info.value.reason


def test_no_match_for_a_combination():
    with pytest.raises(NoMatch, match="none matches this combination"):
        dark(det="NRCA1", sub="SUB640", nout=4)


def test_exposure_na_value_is_dont_care():
    # an exposure value of N/A passes every field (weight 0), as in CRDS
    assert dark(det="NRCA1", sub="SUB640", nout="N/A") == "jwst_nircam_dark_0102.fits"


def test_missing_parameter_is_reported():
    raw = {"META.INSTRUMENT.DETECTOR": "NRCA2", "META.SUBARRAY.NAME": "FULL",
           "META.OBSERVATION.DATE": "2023-01-01", "META.OBSERVATION.TIME": "00:00:00"}
    with pytest.raises(NoMatch, match=r"META.EXPOSURE.TYPE is not set \(NRC_CORON, NRC_DARK"):
        DARK.select({k: condition_value(v) for k, v in raw.items()}, raw)


def test_missing_parameter_is_undefined():
    raw = {"META.EXPOSURE.TYPE": "NRC_IMAGE", "META.INSTRUMENT.DETECTOR": "NRCA2",
           "META.OBSERVATION.DATE": "2023-01-01", "META.OBSERVATION.TIME": "00:00:00"}
    # no SUBARRAY / NOUTPUTS: only the GENERIC (N/A) rule can still match
    assert DARK.select({k: condition_value(v) for k, v in raw.items()}, raw) == \
        "jwst_nircam_dark_0103.fits"


def test_ambiguous_equal_weight_rules_raise():
    readnoise = parse_mapping(FIXTURES / "jwst_nircam_readnoise_0001.rmap")
    values = dict(META__INSTRUMENT__DETECTOR="NRCA1", META__SUBARRAY__NAME="FULL",
                  META__OBSERVATION__DATE="2023-01-01", META__OBSERVATION__TIME="00:00:00")
    with pytest.raises(ReferenceFileError, match="ambiguous rules: 2 Match cases"):
        choose(readnoise, **values)
    values["META__INSTRUMENT__DETECTOR"] = "NRCB1"
    assert choose(readnoise, **values) == "jwst_nircam_readnoise_0003.fits"


def test_hst_style_equal_weight_useafter_rules_merge():
    text = rmap("Match({\n"
                "  ('A', 'N/A') : UseAfter({'2001-01-01 00:00:00' : 'a_1.fits',\n"
                "                           '2005-01-01 00:00:00' : 'a_2.fits'}),\n"
                "  ('N/A', 'B') : UseAfter({'2003-01-01 00:00:00' : 'b_1.fits',\n"
                "                           '2005-01-01 00:00:00' : 'b_2.fits'}),\n"
                "})", "(('META.X.P', 'META.X.Q'), ('META.OBSERVATION.DATE', "
                "'META.OBSERVATION.TIME'))", raise_ambiguous="false")
    mapping = parse_mapping_text(text, "merge.rmap")
    base = dict(META__X__P="A", META__X__Q="B", META__OBSERVATION__TIME="00:00:00")
    assert choose(mapping, META__OBSERVATION__DATE="2004-01-01", **base) == "b_1.fits"
    # a date collision goes to the greater file name, as CRDS merges
    assert choose(mapping, META__OBSERVATION__DATE="2006-01-01", **base) == "b_2.fits"


# -- UseAfter --------------------------------------------------------------------------------------

@pytest.mark.parametrize("date, time, expected", [
    ("2022-07-01", "00:00:00", "jwst_nircam_dark_0105.fits"),        # exactly on the boundary
    ("2022-07-01", "00:00:00.000", "jwst_nircam_dark_0105.fits"),
    ("2022/07/01", "00:00", "jwst_nircam_dark_0105.fits"),
    ("2022-06-30", "23:59:59.999", "jwst_nircam_dark_0104.fits"),    # just before
    ("2014-10-01", "00:00:00", "jwst_nircam_dark_0104.fits"),        # first date, inclusive
    ("2030-01-01", "12:00:00", "jwst_nircam_dark_0105.fits"),        # after every date
])
def test_useafter_picks_latest_date_not_after_observation(date, time, expected):
    assert dark(date=date, time=time) == expected


def test_useafter_order_in_file_does_not_matter():
    text = rmap("UseAfter({\n  '2020-01-01 00:00:00' : 'c.fits',\n"
                "  '2010-01-01 00:00:00' : 'a.fits',\n  '2015-06-01 12:00:00' : 'b.fits',\n})",
                "(('META.OBSERVATION.DATE', 'META.OBSERVATION.TIME'),)")
    mapping = parse_mapping_text(text, "order.rmap")

    def pick(date, time):
        return choose(mapping, META__OBSERVATION__DATE=date, META__OBSERVATION__TIME=time)

    assert pick("2015-06-01", "11:59:59") == "a.fits"
    assert pick("2015-06-01", "12:00:00") == "b.fits"
    assert pick("2019-12-31", "23:59:59") == "b.fits"
    assert pick("2021-01-01", "00:00:00") == "c.fits"
    with pytest.raises(NoMatch, match="no rule is in use on 2009-12-31 00:00:00 "
                                      r"\(earliest USEAFTER date: 2010-01-01"):
        pick("2009-12-31", "00:00:00")


def test_too_early_for_best_rule_falls_through_to_next():
    # NRCA2 FULL rules start 2014-10-01; the GENERIC rule starts 2010: CRDS tries it next
    assert dark(date="2012-03-04") == "jwst_nircam_dark_0103.fits"
    with pytest.raises(NoMatch, match="earliest USEAFTER date: 2014-10-01"):
        dark(det="NRCA1", date="2012-03-04")


def test_missing_date_is_reported():
    raw = {"META.EXPOSURE.TYPE": "NRC_IMAGE", "META.INSTRUMENT.DETECTOR": "NRCA1",
           "META.SUBARRAY.NAME": "FULL", "META.EXPOSURE.NOUTPUTS": 4,
           "META.OBSERVATION.DATE": "2020-01-01"}
    with pytest.raises(NoMatch, match="META.OBSERVATION.TIME is not set"):
        DARK.select({k: condition_value(v) for k, v in raw.items()}, raw)


# -- relations, relevance, other selectors ---------------------------------------------------------

def test_relational_keys():
    miri = parse_mapping(FIXTURES / "jwst_miri_dark_0001.rmap")
    base = dict(META__INSTRUMENT__DETECTOR="MIRIMAGE", META__EXPOSURE__READPATT="FASTR1",
                META__SUBARRAY__NAME="FULL", META__OBSERVATION__DATE="2023-01-01",
                META__OBSERVATION__TIME="00:00:00")
    assert choose(miri, META__EXPOSURE__NGROUPS=99, **base) == "jwst_miri_dark_0201.fits"
    assert choose(miri, META__EXPOSURE__NGROUPS=100, **base) == "jwst_miri_dark_0202.fits"
    base.update(META__SUBARRAY__NAME="SUB256")
    assert choose(miri, META__EXPOSURE__NGROUPS=7, **base) == "jwst_miri_dark_0301.fits"
    base.update(META__INSTRUMENT__DETECTOR="MIRIFULONG", META__EXPOSURE__READPATT="SLOWR1",
                META__SUBARRAY__NAME="FULL")
    assert choose(miri, META__EXPOSURE__NGROUPS=5, **base) == "jwst_miri_dark_0401.fits"
    with pytest.raises(NoMatch):
        choose(miri, META__EXPOSURE__NGROUPS=50, **base)  # between is [low, high)


@pytest.mark.parametrize("key, value, status", [
    ("(NRC[AB][1-4])", "NRCB3", 1), ("(NRC[AB][1-4])", "NRCB5", -1), ("{A|B}", "A|B", 1),
    ("{A|B}", "A", -1), ("# >1 AND <=20 #", "20.0", 1), ("# >1 AND <=20 #", "21.0", -1),
    ("#>20 OR <5#", "4.0", 1), ("NOT NRCA1", "NRCA2", 1), ("NOT NRCA1", "NRCA1", -1),
    ("F1*W", "F150W", 1), ("N/A", "ANYTHING", 0), ("NRCA1", "*", 1), ("NRCA1", "N/A", 0),
])
def test_matcher_forms(key, value, status):
    from jwpipe.references.mappings import make_matcher
    assert make_matcher(key)(value) == status


def test_rmap_relevance_and_omit():
    flat = parse_mapping(FIXTURES / "jwst_nircam_flat_0001.rmap")
    base = dict(META__INSTRUMENT__DETECTOR="NRCA1", META__INSTRUMENT__FILTER="F200W",
                META__INSTRUMENT__PUPIL="MASKBAR", META__OBSERVATION__DATE="2023-01-01",
                META__OBSERVATION__TIME="00:00:00")
    assert choose(flat, META__EXPOSURE__TYPE="NRC_CORON", **base) == "jwst_nircam_flat_0103.fits"
    assert choose(flat, META__EXPOSURE__TYPE="NRC_WFSS", **base) == "N/A"
    omit = rmap("Match({('A',) : 'a.fits'})", "(('META.X.P',),)",
                rmap_omit='(META.X.P == "A")')
    assert choose(parse_mapping_text(omit, "o.rmap"), META__X__P="A") == "N/A"


def test_parkey_relevance_turns_parameter_into_na():
    text = rmap("Match({('F150W2', 'CLEAR') : 'f.fits'})",
                "(('META.INSTRUMENT.FILTER', 'META.INSTRUMENT.PUPIL'),)",
                parkey_relevance={"META.INSTRUMENT.PUPIL": '(META.INSTRUMENT.FILTER != "F150W2")'})
    mapping = parse_mapping_text(text, "p.rmap")
    assert choose(mapping, META__INSTRUMENT__FILTER="F150W2", META__INSTRUMENT__PUPIL="F162M") \
        == "f.fits"


def test_relevance_expression_is_not_executed():
    bad = rmap("Match({('A',) : 'a.fits'})", "(('META.X.P',),)",
               rmap_relevance="__import__('os').system('false')")
    with pytest.raises(ReferenceFileError, match="Call, which is not allowed"):
        choose(parse_mapping_text(bad, "r.rmap"), META__X__P="A")


def test_reffile_required_no_means_not_applicable():
    superbias = parse_mapping(FIXTURES / "jwst_nircam_superbias_0001.rmap")

    def pick(det, patt, sub):
        return choose(superbias, META__INSTRUMENT__DETECTOR=det, META__EXPOSURE__READPATT=patt,
                      META__SUBARRAY__NAME=sub)

    assert pick("NRCA1", "RAPID", "SUB160") == "jwst_nircam_superbias_0012.fits"
    assert pick("NRCA1", "DEEP8", "SUB160") == "jwst_nircam_superbias_0011.fits"
    assert pick("NRCB1", "RAPID", "FULL") == "N/A"


def test_boolean_parameters():
    pars = parse_mapping(FIXTURES / "jwst_nircam_pars-detector1pipeline_0001.rmap")
    base = dict(META__OBSERVATION__DATE="2023-01-01", META__OBSERVATION__TIME="00:00:00")
    assert choose(pars, META__VISIT__TSOVISIT=True, **base).endswith("_0003.asdf")
    assert choose(pars, META__VISIT__TSOVISIT=False, **base).endswith("_0002.asdf")


def test_top_level_useafter_rmap():
    emi = parse_mapping(FIXTURES / "jwst_miri_emicorr_0001.rmap")
    assert choose(emi, META__OBSERVATION__DATE="2023-06-01", META__OBSERVATION__TIME="00:00:00") \
        == "jwst_miri_emicorr_0002.asdf"


def test_select_version_and_version_after():
    text = rmap("SelectVersion({'<3.1' : 'a.fits', '<5' : 'b.fits', 'default' : 'c.fits'})",
                "(('META.CALIBRATION_SOFTWARE_VERSION',),)")
    mapping = parse_mapping_text(text, "v.rmap")

    def pick(version):
        return choose(mapping, META__CALIBRATION_SOFTWARE_VERSION=version)

    assert (pick("2.0"), pick("4.5"), pick("5"), pick("6")) == ("a.fits", "b.fits", "c.fits",
                                                                "c.fits")
    text = rmap("VersionAfter({'0.0.2' : 't0.json', '5.2' : 't2.json', '50.1' : 't3.json'})",
                "(('META.CALIBRATION_SOFTWARE_VERSION',),)")
    after = parse_mapping_text(text, "va.rmap")

    def pick(version):  # noqa: F811 - a second, VersionAfter picker
        return choose(after, META__CALIBRATION_SOFTWARE_VERSION=version)

    assert (pick("0.6.0"), pick("50.0"), pick("100.0.0")) == ("t0.json", "t2.json", "t3.json")
    with pytest.raises(NoMatch):
        pick("0.0.1")


def test_empty_parkey_level_and_empty_key():
    text = rmap("Match({() : UseAfter({'2000-01-01 00:00:00' : 'only.fits'})})",
                "((), ('META.OBSERVATION.DATE', 'META.OBSERVATION.TIME'))")
    mapping = parse_mapping_text(text, "e.rmap")
    assert choose(mapping, META__OBSERVATION__DATE="2001-01-01",
                  META__OBSERVATION__TIME="00:00:00") == "only.fits"
