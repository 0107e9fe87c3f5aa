"""Make the IRS2 oracle of tests/test_irs2.py with the reference pipeline (jwst).

Run with the jwst environment, from anywhere::

    /work/venv-jwst/bin/python tests/_reference/make_irs2_oracle.py [--full DIR]

For each case it regenerates the synthetic exposure and reference of ``tests/_irs2_fixtures.py``,
runs jwst's IRS2 path of the refpix step on in-memory datamodels -- ``flag_bad_refpix``
(flag_only, n_sigma=3), for the ``_mean`` cases the ordinary top/bottom correction
(``reference_pixels.correct_model`` without side pixels: the step's ``irs2_mean_subtraction``),
``flag_bad_refpix`` (replace_only), ``correct_model`` with the reference written to and read
back from a FITS file -- and saves a small summary in
``tests/data/irs2/<case>.npz``:

- ``input_sha256``, ``reference_sha256``: checksums of the generated input;
- ``flagged_pixeldq``: PIXELDQ after the flagging pass (IRS2 shape, compresses to little);
- ``replaced_rows``, ``replaced``: the rows flagged BAD_REF_PIXEL and their values after the
  replacing pass, every 16th column;
- ``values``: the output at fixed sample positions (``_irs2_fixtures.sample_positions``), per
  integration and group;
- ``row_mean``, ``col_mean``: NaN-ignoring means of each output row and column (float64);
- ``pixeldq``, ``groupdq``: the output DQ arrays, whole.

``--full DIR`` also writes the whole outputs there (for development, not for the repository).
jwpipe is not imported.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import _irs2_fixtures as fx  # noqa: E402

CASES = fx.ORACLE_CASES
OUT = HERE.parent / "data" / "irs2"


def run_jwst(exposure: dict, ref_path: Path, preserve_refpix: bool, mean_subtraction: bool):
    from jwst.refpix import irs2_subtract_reference as irs2
    from jwst.refpix import reference_pixels
    from stdatamodels.jwst import datamodels

    model = datamodels.RampModel(data=exposure["data"].copy(),
                                 pixeldq=exposure["pixeldq"].copy(),
                                 groupdq=exposure["groupdq"].copy())
    model.meta.instrument.name = "NIRSPEC"
    model.meta.instrument.detector = exposure["detector"]
    model.meta.exposure.readpatt = "NRSIRS2"
    model.meta.exposure.nrs_normal = fx.SCIPIX_N
    model.meta.exposure.nrs_reference = fx.REFPIX_R
    model.meta.exposure.nints, model.meta.exposure.ngroups = model.data.shape[:2]

    irs2.flag_bad_refpix(model, n_sigma=3.0, flag_only=True)
    flagged = model.pixeldq.copy()
    if mean_subtraction:  # as RefPixStep with irs2_mean_subtraction=True (side pixels off)
        sub = model.meta.subarray
        sub.name, sub.xstart, sub.ystart = "FULL", 1, 1
        sub.ysize, sub.xsize = model.data.shape[-2:]
        sub.fastaxis, sub.slowaxis = fx.AXES[exposure["detector"]]
        model.meta.exposure.noutputs = 4
        model.meta.exposure.zero_frame = False
        kernel = {"refpix_algorithm": "median", "sirs_kernel_model": None, "sigreject": 4.0,
                  "gaussmooth": 1.0, "halfwidth": 30}
        reference_pixels.correct_model(model, True, False, 11, 1.0, True, kernel, 3.0)
    irs2.flag_bad_refpix(model, replace_only=True)
    replaced = model.data.copy()
    with datamodels.IRS2Model(str(ref_path)) as ref_model:
        model = irs2.correct_model(model, ref_model, preserve_refpix=preserve_refpix)
    return flagged, replaced, model


def make_case(name: str, full_dir: Path | None) -> None:
    detector, nints, ngroups, preserve, count = CASES[name]
    exposure = fx.make_exposure(detector, ngroups=ngroups, nints=nints)
    ref = fx.make_reference()
    with tempfile.TemporaryDirectory() as tmp:
        ref_path = Path(tmp) / "irs2_refpix.fits"
        fx.write_reference_fits(ref_path, ref)
        flagged, replaced, model = run_jwst(exposure, ref_path, preserve,
                                            name.endswith("_mean"))

    data = np.asarray(model.data, np.float32)
    rows_flagged = np.flatnonzero(np.any(flagged & fx.BAD_REF_PIXEL, axis=1))
    r, c = fx.sample_positions(data.shape[-2], data.shape[-1], count)
    summary = {
        "input_sha256": fx.checksum(exposure["data"], exposure["pixeldq"], exposure["groupdq"]),
        "reference_sha256": fx.checksum(ref["alpha"], ref["beta"], ref["output"],
                                        ref["odd_even"], ref["mask"]),
        "flagged_pixeldq": flagged,
        "replaced_rows": rows_flagged,
        "replaced": replaced[:, :, rows_flagged, ::16].astype(np.float32),
        "values": data[:, :, r, c],
        "row_mean": np.nanmean(data.astype(np.float64), axis=-1),
        "col_mean": np.nanmean(data.astype(np.float64), axis=-2),
        "pixeldq": np.asarray(model.pixeldq, np.uint32),
        "groupdq": np.asarray(model.groupdq, np.uint8),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / f"{name}.npz", **summary)
    print(f"{name}: {data.shape}, {len(rows_flagged)} flagged rows, "
          f"{(OUT / f'{name}.npz').stat().st_size / 1e3:.0f} kB")
    if full_dir is not None:
        full_dir.mkdir(parents=True, exist_ok=True)
        np.savez(full_dir / f"{name}_full.npz", data=data, pixeldq=model.pixeldq,
                 groupdq=model.groupdq, flagged=flagged, replaced=replaced)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", type=Path, default=None)
    parser.add_argument("cases", nargs="*", default=list(CASES))
    args = parser.parse_args()
    for name in args.cases:
        make_case(name, args.full)


if __name__ == "__main__":
    main()
