"""The one table mapping metadata paths to FITS header keywords.

Each row is ``(meta path, FITS keyword, HDU, type)``. HDU is ``"PRIMARY"`` or ``"SCI"`` (the first
science extension). Types are ``str``, ``int``, ``float`` or ``bool``. Reading a file fills
``model.meta`` from these keywords; writing puts them back. Keywords that are not in the table are
carried through untouched (see ``DataModel.extra_fits``), so nothing a file holds is lost.
Paths follow the JWST data-model schema names, so a product jwpipe writes has the same metadata tree
as one written by the reference ecosystem.
"""

from __future__ import annotations

S, INT, F, B = str, int, float, bool

_PRIMARY: list[tuple[str, str, type]] = [
    # file and model
    ("date", "DATE", S), ("origin", "ORIGIN", S), ("time_sys", "TIMESYS", S),
    ("filename", "FILENAME", S), ("filetype", "FILETYPE", S), ("model_type", "DATAMODL", S),
    ("telescope", "TELESCOP", S),
    ("calibration_software_version", "CAL_VER", S),
    ("calibration_software_revision", "CAL_VCS", S),
    ("prd_version", "PRD_VER", S), ("sdp_version", "SDP_VER", S),
    # observation identifiers
    ("observation.date", "DATE-OBS", S), ("observation.time", "TIME-OBS", S),
    ("observation.date_beg", "DATE-BEG", S), ("observation.date_end", "DATE-END", S),
    ("observation.obs_id", "OBS_ID", S), ("observation.visit_id", "VISIT_ID", S),
    ("observation.program_number", "PROGRAM", S), ("observation.observation_number", "OBSERVTN", S),
    ("observation.visit_number", "VISIT", S), ("observation.visit_group", "VISITGRP", S),
    ("observation.sequence_id", "SEQ_ID", S), ("observation.activity_id", "ACT_ID", S),
    ("observation.exposure_number", "EXPOSURE", S), ("observation.template", "TEMPLATE", S),
    ("observation.observation_label", "OBSLABEL", S), ("observation.bkgdtarg", "BKGDTARG", B),
    # program
    ("program.title", "TITLE", S), ("program.pi_name", "PI_NAME", S),
    ("program.category", "CATEGORY", S),
    # visit
    ("visit.type", "VISITYPE", S), ("visit.tsovisit", "TSOVISIT", B),
    ("visit.start_time", "VSTSTART", S), ("visit.engineering_quality", "ENG_QUAL", S),
    ("visit.crowded_field", "CROWDFLD", B),
    # target
    ("target.proposer_name", "TARGPROP", S), ("target.catalog_name", "TARGNAME", S),
    ("target.type", "TARGTYPE", S), ("target.ra", "TARG_RA", F), ("target.dec", "TARG_DEC", F),
    ("target.ra_uncertainty", "TARGURA", F), ("target.dec_uncertainty", "TARGUDEC", F),
    ("target.proper_motion_ra", "MU_RA", F), ("target.proper_motion_dec", "MU_DEC", F),
    ("target.proper_motion_epoch", "MU_EPOCH", S), ("target.source_type_apt", "SRCTYAPT", S),
    # instrument
    ("instrument.name", "INSTRUME", S), ("instrument.detector", "DETECTOR", S),
    ("instrument.module", "MODULE", S), ("instrument.channel", "CHANNEL", S),
    ("instrument.filter", "FILTER", S), ("instrument.pupil", "PUPIL", S),
    ("instrument.grating", "GRATING", S), ("instrument.fixed_slit", "FXD_SLIT", S),
    ("instrument.band", "BAND", S), ("instrument.coronagraph", "CORONMSK", S),
    ("instrument.lamp_state", "LAMP", S), ("instrument.lamp_mode", "LAMPMODE", S),
    ("instrument.focus_position", "FOCUSPOS", F),
    ("instrument.msa_metadata_file", "MSAMETFL", S),
    ("instrument.msa_metadata_id", "MSAMETID", INT),
    ("instrument.gwa_tilt", "GWA_TILT", F), ("instrument.gwa_xtilt", "GWA_XTIL", F),
    ("instrument.gwa_ytilt", "GWA_YTIL", F),
    # exposure
    ("exposure.pointing_sequence", "PNTG_SEQ", INT), ("exposure.count", "EXPCOUNT", INT),
    ("exposure.expripar", "EXPRIPAR", S), ("exposure.type", "EXP_TYPE", S),
    ("exposure.start_time", "EXPSTART", F), ("exposure.mid_time", "EXPMID", F),
    ("exposure.end_time", "EXPEND", F), ("exposure.readpatt", "READPATT", S),
    ("exposure.noutputs", "NOUTPUTS", INT), ("exposure.nints", "NINTS", INT),
    ("exposure.integration_start", "INTSTART", INT), ("exposure.integration_end", "INTEND", INT),
    ("exposure.ngroups", "NGROUPS", INT), ("exposure.nframes", "NFRAMES", INT),
    ("exposure.frame_divisor", "FRMDIVSR", INT), ("exposure.groupgap", "GROUPGAP", INT),
    ("exposure.drop_frames1", "DRPFRMS1", INT), ("exposure.drop_frames3", "DRPFRMS3", INT),
    ("exposure.nsamples", "NSAMPLES", INT), ("exposure.sample_time", "TSAMPLE", F),
    ("exposure.frame_time", "TFRAME", F), ("exposure.group_time", "TGROUP", F),
    ("exposure.integration_time", "EFFINTTM", F), ("exposure.exposure_time", "EFFEXPTM", F),
    ("exposure.measurement_time", "TMEASURE", F), ("exposure.duration", "DURATION", F),
    ("exposure.nresets_at_start", "NRSTSTRT", INT),
    ("exposure.nresets_between_ints", "NRESETS", INT),
    ("exposure.zero_frame", "ZEROFRAM", B), ("exposure.data_problem", "DATAPROB", B),
    ("exposure.segment_number", "EXSEGNUM", INT), ("exposure.total_segments", "EXSEGTOT", INT),
    ("exposure.gain_factor", "GAINFACT", F), ("exposure.primary_cosmic_rays", "PRIMECRS", F),
    ("exposure.extended_emission_events", "EXTNCRS", F),
    ("exposure.mrs_nframes", "MIRNFRMS", INT), ("exposure.mrs_ngroups", "MIRNGRPS", INT),
    ("exposure.frame_div_mrs", "MIRFRMDV", INT),
    ("exposure.p_readpatt", "P_READPA", S), ("exposure.p_exptype", "P_EXP_TY", S),
    ("instrument.p_filter", "P_FILTER", S), ("instrument.p_pupil", "P_PUPIL", S),
    ("exposure.average_dark_current", "AVDRKCUR", F),
    # subarray
    ("subarray.name", "SUBARRAY", S), ("subarray.xstart", "SUBSTRT1", INT),
    ("subarray.ystart", "SUBSTRT2", INT), ("subarray.xsize", "SUBSIZE1", INT),
    ("subarray.ysize", "SUBSIZE2", INT), ("subarray.fastaxis", "FASTAXIS", INT),
    ("subarray.slowaxis", "SLOWAXIS", INT),
    ("subarray.multistripe_reads1", "MSTR_RD1", INT),
    ("subarray.multistripe_skips1", "MSTR_SK1", INT),
    ("subarray.multistripe_reads2", "MSTR_RD2", INT),
    ("subarray.multistripe_skips2", "MSTR_SK2", INT),
    ("subarray.repeat_stripe", "MSTR_RPT", INT), ("subarray.interleave_reads1", "MSTR_ILV", INT),
    ("subarray.superstripe_step", "SSTR_STP", INT), ("subarray.num_superstripe", "SSTR_NST", INT),
    # aperture, dither, pointing
    ("aperture.name", "APERNAME", S), ("aperture.pps_name", "PPS_APER", S),
    ("aperture.position_angle", "PA_APER", F),
    ("dither.primary_type", "PATTTYPE", S), ("dither.position_number", "PATT_NUM", INT),
    ("dither.total_points", "NUMDTHPT", INT), ("dither.pattern_size", "PATTSIZE", S),
    ("dither.subpixel_pattern", "SUBPXPAT", S), ("dither.x_offset", "XOFFSET", F),
    ("dither.y_offset", "YOFFSET", F),
    ("pointing.ra_v1", "RA_V1", F), ("pointing.dec_v1", "DEC_V1", F),
    ("pointing.pa_v3", "PA_V3", F),
    # association
    ("asn.pool_name", "ASNPOOL", S), ("asn.table_name", "ASNTABLE", S),
    # reference-file descriptors (CRDS reference files)
    ("reftype", "REFTYPE", S), ("description", "DESCRIP", S), ("author", "AUTHOR", S),
    ("pedigree", "PEDIGREE", S), ("useafter", "USEAFTER", S),
    ("ref_file.crds.sw_version", "CRDS_VER", S), ("ref_file.crds.context_used", "CRDS_CTX", S),
]

# Reference-file names recorded in products: R_<TYPE> -> meta.ref_file.<type>.name
_REF_KEYWORDS = {
    "area": "R_AREA", "dark": "R_DARK", "distortion": "R_DISTOR", "flat": "R_FLAT",
    "gain": "R_GAIN", "ipc": "R_IPC", "linearity": "R_LINEAR", "mask": "R_MASK",
    "persat": "R_PERSAT", "photom": "R_PHOTOM", "readnoise": "R_READNO", "refpix": "R_REFPIX",
    "reset": "R_RESET", "rscd": "R_RSCD", "saturation": "R_SATURA", "superbias": "R_SUPERB",
    "trapdensity": "R_TRPDEN", "trappars": "R_TRPPAR", "sirskernel": "R_SIRSKR",
    "filteroffset": "R_FILOFF", "emicorr": "R_EMICOR", "pictureframe": "R_PCTFRM",
    "apcorr": "R_APCORR", "abvegaoffset": "R_ABVEGA", "drizpars": "R_DRZPRS",
    "specwcs": "R_SPCWCS", "regions": "R_REGION", "wavelengthrange": "R_WAVRAN",
    "bkg": "R_BKG", "fringe": "R_FRINGE", "pathloss": "R_PTHLOS", "extract1d": "R_EXTR1D",
    "cubepar": "R_CUBPAR", "psfmask": "R_PSFMSK",
}

# Step status keywords: S_<ABBR> -> meta.cal_step.<name>
CAL_STEP_KEYWORDS = {
    "group_scale": "S_GRPSCL", "dq_init": "S_DQINIT", "emicorr": "S_MIREMI",
    "saturation": "S_SATURA", "ipc": "S_IPC", "superbias": "S_SUPERB", "refpix": "S_REFPIX",
    "firstframe": "S_FRSTFR", "lastframe": "S_LASTFR", "reset": "S_RESET",
    "linearity": "S_LINEAR", "rscd": "S_RSCD", "dark_sub": "S_DARK", "persistence": "S_PERSIS",
    "charge_migration": "S_CHGMIG", "jump": "S_JUMP", "picture_frame": "S_PCTFRM",
    "clean_flicker_noise": "S_CLNFNS", "ramp_fit": "S_RAMP", "gain_scale": "S_GANSCL",
    "assign_wcs": "S_WCS", "back_sub": "S_BKDSUB", "flat_field": "S_FLAT", "photom": "S_PHOTOM",
    "resample": "S_RESAMP", "tweakreg": "S_TWKREG", "skymatch": "S_SKYMAT",
    "outlier_detection": "S_OUTLIR", "source_catalog": "S_SRCCAT", "extract_2d": "S_EXTR2D",
    "extract_1d": "S_EXTR1D", "cube_build": "S_IFUCUB", "master_background": "S_MSBSUB",
    "pathloss": "S_PTHLOS", "barshadow": "S_BARSHA", "straylight": "S_STRAY",
    "fringe": "S_FRINGE", "residual_fringe": "S_RESFRI", "srctype": "S_SRCTYP",
    "wavecorr": "S_WAVCOR", "imprint": "S_IMPRNT", "msa_flagging": "S_MSAFLG",
    "pixel_replace": "S_PXREPL", "adaptive_trace_model": "S_TRCMOD", "combine_1d": "S_COMB1D",
    "spectral_leak": "S_SPLEAK", "klip": "S_KLIP", "align_psfs": "S_PSFALI",
    "stack_psfs": "S_PSFSTK", "ami_analyze": "S_AMIANA", "ami_normalize": "S_AMINOR",
    "tso_photometry": "S_TSPHOT", "white_light": "S_WHTLIT", "wfss_contam": "S_CONTAM",
    "assign_mtwcs": "S_MTWCS", "badpix_selfcal": "S_BPXSLF", "targ_centroid": "S_TACNTR",
    "guider_cds": "S_GUICDS",
}

_SCI: list[tuple[str, str, type]] = [
    ("bunit_data", "BUNIT", S),
    ("exposure.start_time_mjd", "MJD-BEG", F), ("exposure.mid_time_mjd", "MJD-AVG", F),
    ("exposure.end_time_mjd", "MJD-END", F),
    ("exposure.effective_exposure_time", "XPOSURE", F),
    ("exposure.elapsed_exposure_time", "TELAPSE", F),
    ("wcsinfo.wcsaxes", "WCSAXES", INT), ("wcsinfo.crpix1", "CRPIX1", F),
    ("wcsinfo.crpix2", "CRPIX2", F), ("wcsinfo.crval1", "CRVAL1", F),
    ("wcsinfo.crval2", "CRVAL2", F), ("wcsinfo.ctype1", "CTYPE1", S),
    ("wcsinfo.ctype2", "CTYPE2", S), ("wcsinfo.cunit1", "CUNIT1", S),
    ("wcsinfo.cunit2", "CUNIT2", S), ("wcsinfo.cdelt1", "CDELT1", F),
    ("wcsinfo.cdelt2", "CDELT2", F), ("wcsinfo.pc1_1", "PC1_1", F), ("wcsinfo.pc1_2", "PC1_2", F),
    ("wcsinfo.pc2_1", "PC2_1", F), ("wcsinfo.pc2_2", "PC2_2", F),
    ("wcsinfo.v2_ref", "V2_REF", F), ("wcsinfo.v3_ref", "V3_REF", F),
    ("wcsinfo.vparity", "VPARITY", INT), ("wcsinfo.v3yangle", "V3I_YANG", F),
    ("wcsinfo.ra_ref", "RA_REF", F), ("wcsinfo.dec_ref", "DEC_REF", F),
    ("wcsinfo.roll_ref", "ROLL_REF", F), ("wcsinfo.siaf_xref_sci", "XREF_SCI", F),
    ("wcsinfo.siaf_yref_sci", "YREF_SCI", F), ("wcsinfo.s_region", "S_REGION", S),
    ("wcsinfo.dispersion_direction", "DISPAXIS", INT),
    ("wcsinfo.radesys", "RADESYS", S), ("wcsinfo.velosys", "VELOSYS", F),
    ("target.source_type", "SRCTYPE", S),
    ("photometry.conversion_megajanskys", "PHOTMJSR", F),
    ("photometry.conversion_microjanskys", "PHOTUJA2", F),
    ("photometry.pixelarea_steradians", "PIXAR_SR", F),
    ("photometry.pixelarea_arcsecsq", "PIXAR_A2", F),
    ("resample.pixfrac", "PIXFRAC", F), ("resample.pixel_scale_ratio", "PXSCLRT", F),
    ("resample.weight_type", "RESWHT", S), ("resample.product_exposure_time", "TEXPTIME", F),
]

#: Rows of the keyword table: (meta path, keyword, hdu, type).
KEYWORDS: tuple[tuple[str, str, str, type], ...] = tuple(
    [(path, kw, "PRIMARY", t) for path, kw, t in _PRIMARY]
    + [(f"ref_file.{name}.name", kw, "PRIMARY", S) for name, kw in _REF_KEYWORDS.items()]
    + [(f"cal_step.{name}", kw, "PRIMARY", S) for name, kw in CAL_STEP_KEYWORDS.items()]
    + [(path, kw, "SCI", t) for path, kw, t in _SCI]
)

#: Per-spectrum metadata of spectral products (``specmeta`` schema): (attribute, keyword, type),
#: in the header of each spectrum's EXTRACT1D extension rather than in ``meta``.
SPECTRUM_KEYWORDS: tuple[tuple[str, str, type], ...] = (
    ("name", "SLTNAME", S), ("slitlet_id", "SLITID", INT), ("source_id", "SOURCEID", INT),
    ("source_name", "SRCNAME", S), ("source_alias", "SRCALIAS", S),
    ("stellarity", "STLARITY", F), ("source_type", "SRCTYPE", S),
    ("ta_xpos", "TA_XPOS", F), ("ta_ypos", "TA_YPOS", F),
    ("source_xpos", "SRCXPOS", F), ("source_ypos", "SRCYPOS", F),
    ("source_ra", "SRCRA", F), ("source_dec", "SRCDEC", F),
    ("extraction_x", "EXTR_X", F), ("extraction_y", "EXTR_Y", F),
    ("extraction_xstart", "EXTRXSTR", F), ("extraction_xstop", "EXTRXSTP", F),
    ("extraction_ystart", "EXTRYSTR", F), ("extraction_ystop", "EXTRYSTP", F),
    ("shutter_state", "SHUTSTA", S), ("slit_ra", "SLIT_RA", F), ("slit_dec", "SLIT_DEC", F),
    ("quadrant", "MSAQUAD", INT), ("slit_xscale", "SLTXSCL", F), ("slit_yscale", "SLTYSCL", F),
    ("spectral_order", "SPORDER", INT), ("dispersion_direction", "DISPAXIS", INT),
    ("detector", "DETECTOR", S), ("int_num", "INT_NUM", INT),
    ("time_sys", "TIMESYS", S), ("time_unit", "TIMEUNIT", S),
    ("start_time_mjd", "MJD-BEG", F), ("mid_time_mjd", "MJD-AVG", F),
    ("end_time_mjd", "MJD-END", F), ("start_tdb", "TDB-BEG", F), ("mid_tdb", "TDB-MID", F),
    ("end_tdb", "TDB-END", F), ("wavelength_corrected", "WAVECOR", B),
    ("pathloss_correction_type", "PTHLOSS", S), ("barshadow_corrected", "BARSHDW", B),
    ("s_region", "S_REGION", S), ("position_angle", "PA_APER", F),
)

#: Keywords that the FITS standard or the writer itself owns; never copied as metadata.
STRUCTURAL = frozenset(
    "SIMPLE BITPIX NAXIS EXTEND XTENSION PCOUNT GCOUNT BSCALE BZERO EXTNAME EXTVER TFIELDS "
    "CHECKSUM DATASUM".split()
)


def known_paths() -> set[str]:
    """All leaf metadata paths the table knows."""
    return {row[0] for row in KEYWORDS}


def keyword_for(path: str) -> tuple[str, str, type] | None:
    """(keyword, hdu, type) for a metadata path, or None."""
    return _BY_PATH.get(path)


_BY_PATH = {path: (kw, hdu, t) for path, kw, hdu, t in KEYWORDS}
BY_HDU_KEYWORD = {(hdu, kw): (path, t) for path, kw, hdu, t in KEYWORDS}
