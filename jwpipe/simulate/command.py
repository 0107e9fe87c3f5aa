"""``python -m jwpipe simulate {cache,exposure,observation,tso}``: the synthetic observatory's CLI.

``add_parser(subparsers)`` adds the ``simulate`` sub-command to an argparse sub-parsers object;
``run(args)`` executes it and returns the exit code (0, or 2 with a one-line message for any
:class:`~jwpipe.errors.JwpipeError`)::

    jwpipe simulate cache crds_cache --detectors NRCA1 --subarrays FULL SUB160
    jwpipe simulate exposure --crds-path crds_cache --detector NRCA1 --subarray SUB160 \\
        --ngroups 10 --nints 3 --seed 42 -o out
    jwpipe simulate observation --crds-path crds_cache --subarray SUB640 --dithers 4 -o obs
    jwpipe simulate tso --crds-path crds_cache --instrument NIRCAM --nints 60 \\
        --ints-per-segment 20 -o tso
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def _exposure_options(p: argparse.ArgumentParser, tso: bool = False) -> None:
    g = p.add_argument_group("exposure")
    g.add_argument("--crds-path", help="local CRDS cache (default: $CRDS_PATH)")
    g.add_argument("-o", "--output-dir", default=".", help="where products go (default: .)")
    if not tso:
        g.add_argument("--detector", default="NRCA1",
                       help="NRCA1, NRCALONG, NIS, NRS1, NRS2 or MIRIMAGE (default: NRCA1)")
        g.add_argument("--subarray", default="FULL", help="subarray name (default: FULL)")
    else:
        g.add_argument("--instrument", default="NIRCAM",
                       help="NIRCAM (TSIMAGE), NIRISS (SOSS), NIRSPEC (BRIGHTOBJ) or MIRI")
        g.add_argument("--detector", help="override the instrument's default detector")
        g.add_argument("--subarray", help="override the instrument's default subarray")
    g.add_argument("--readpatt", help="readout pattern (default per instrument)")
    g.add_argument("--ngroups", type=int, help="groups per integration")
    g.add_argument("--nints", type=int, help="integrations")
    g.add_argument("--filter", help="filter (default per detector)")
    g.add_argument("--exp-type", help="EXP_TYPE (default per instrument)")
    g.add_argument("--ra", type=float, help="target RA, deg")
    g.add_argument("--dec", type=float, help="target Dec, deg")
    g.add_argument("--roll", type=float, help="V3 position angle at the aperture, deg")
    g.add_argument("--date-obs", help="start of exposure, ISO UTC")
    g.add_argument("--background", type=float, help="sky, MJy/sr (default: the filter's)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    g.add_argument("--no-noise", action="store_true",
                   help="noiseless: no Poisson, read or correlated noise")
    g.add_argument("--cosmic-rays", type=float, help="events per pixel per second (0: none)")
    g.add_argument("--zeroframe", action="store_true", help="write the ZEROFRAME extension")
    g.add_argument("--ints-per-segment", type=int, help="split into -segNNN files")
    g.add_argument("--ensure-cache", action="store_true",
                   help="write missing references into the cache first")
    g.add_argument("--threads", type=int, help="kernel threads (default: all CPUs)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``simulate`` and its sub-commands to an argparse sub-parsers object."""
    p = subparsers.add_parser(
        "simulate", help="write synthetic CRDS references and raw exposures with known truth",
        description="The synthetic observatory: CRDS-format reference sets and raw exposures "
                    "(_uncal) with their truth files.")
    sub = p.add_subparsers(dest="simulate_command", metavar="{cache,exposure,observation,tso}")
    sub.required = True

    c = sub.add_parser("cache", help="write (or extend) a local CRDS cache of references")
    c.add_argument("path", nargs="?", help="cache folder (default: $CRDS_PATH)")
    c.add_argument("--instruments", nargs="+", help="NIRCAM NIRISS NIRSPEC MIRI (default: all)")
    c.add_argument("--detectors", nargs="+", help="detectors (default: all of the instruments)")
    c.add_argument("--subarrays", nargs="+", help="subarrays (default: all defined, FULL too)")
    c.add_argument("--filters", nargs="+", help="filters for flats ('all' for every one)")
    c.add_argument("--reftypes", nargs="+", help="only these reference types")
    c.add_argument("--seed", type=int, default=0, help="seed of the detector fields")
    c.add_argument("--dark-frames", type=int, help="frames per dark reference")
    c.add_argument("--overwrite", action="store_true", help="rewrite existing entries")

    e = sub.add_parser("exposure", help="simulate one raw exposure")
    _exposure_options(e)

    o = sub.add_parser("observation", help="simulate a dithered imaging observation + ASNs")
    _exposure_options(o)
    o.add_argument("--dithers", type=int, default=4, help="dither positions (default: 4)")
    o.add_argument("--dither-size", type=float, default=1.0, help="pattern size, arcsec")

    t = sub.add_parser("tso", help="simulate a segmented time series with a transit + ASNs")
    _exposure_options(t, tso=True)
    t.add_argument("--rp", type=float, default=0.1, help="planet radius / stellar radius")
    p.set_defaults(_command_run=run)
    return p


def _overrides(args) -> dict:
    keys = {"detector": "detector", "subarray": "subarray", "readpatt": "readpatt",
            "ngroups": "ngroups", "nints": "nints", "filter": "filter", "exp_type": "exp_type",
            "ra": "ra", "dec": "dec", "roll": "roll", "date_obs": "date_obs",
            "background": "background", "cosmic_rays": "cosmic_rays",
            "ints_per_segment": "ints_per_segment"}
    out = {k: getattr(args, a) for a, k in keys.items() if getattr(args, a, None) is not None}
    if args.no_noise:
        out["noise"] = False
    if args.zeroframe:
        out["zeroframe"] = True
    return out


def _report(exp, out) -> None:
    for p in exp.uncal_paths:
        print(f"wrote {p}", file=out)
    for p in exp.truth_paths:
        print(f"wrote {p}", file=out)
    print(f"wrote {exp.sources_path}", file=out)
    if exp.lightcurve_path:
        print(f"wrote {exp.lightcurve_path}", file=out)
    nints, ngroups, ny, nx = exp.shape
    print(f"{exp.root}: {nints} x {ngroups} x {ny} x {nx}, {exp.n_cosmic_rays} cosmic-ray "
          f"deposits, {exp.elapsed:.2f} s", file=out)


def run(args, out=None) -> int:
    """Run a parsed ``simulate`` command; returns the exit code."""
    from ..errors import JwpipeError
    from . import refs
    from .exposure import simulate_exposure
    from .observation import simulate_imaging_observation, simulate_time_series

    out = out or sys.stdout
    try:
        cmd = args.simulate_command
        if cmd == "cache":
            root = refs.make_crds_cache(
                args.path, instruments=args.instruments, detectors=args.detectors,
                subarrays=args.subarrays,
                filters=("all" if args.filters == ["all"] else args.filters),
                reftypes=args.reftypes,
                seed=args.seed, dark_frames=args.dark_frames, overwrite=args.overwrite,
                log=lambda msg: print(msg, file=out))
            size = sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file())
            print(f"CRDS cache {root} ({size / 2**20:.0f} MB); set CRDS_PATH={root}", file=out)
            return 0
        kw = dict(crds_path=args.crds_path, output_dir=args.output_dir, seed=args.seed,
                  ensure_cache=args.ensure_cache, nthreads=args.threads)
        if cmd == "exposure":
            _report(simulate_exposure(**kw, **_overrides(args)), out)
        elif cmd == "observation":
            obs = simulate_imaging_observation(dithers=args.dithers,
                                               dither_size=args.dither_size, **kw,
                                               **_overrides(args))
            for exp in obs.exposures:
                _report(exp, out)
            print(f"wrote {obs.asn_level2}\nwrote {obs.asn_level3}\nwrote {obs.catalog_path}",
                  file=out)
        elif cmd == "tso":
            ov = _overrides(args)
            nints = ov.pop("nints", 60)
            per = ov.pop("ints_per_segment", 20)
            obs = simulate_time_series(instrument=args.instrument, nints=nints,
                                       ints_per_segment=per, transit={"rp": args.rp}, **kw, **ov)
            _report(obs.exposures[0], out)
            print(f"wrote {obs.asn_level2}\nwrote {obs.asn_level3}", file=out)
        else:  # pragma: no cover - argparse enforces the choices
            raise SystemExit(f"unknown simulate command {cmd!r}")
    except JwpipeError as exc:
        print(f"jwpipe simulate: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    """Stand-alone entry (``python -m jwpipe.simulate.command ...``) for testing."""
    parser = argparse.ArgumentParser(prog="jwpipe")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulate"] + list(sys.argv[1:] if argv is None else argv))
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
