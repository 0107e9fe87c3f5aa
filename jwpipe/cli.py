"""Command line: ``python -m jwpipe <pipeline | cfg> <inputs...> [options]``.

Also ``python -m jwpipe simulate ...`` (the synthetic observatory) and ``python -m jwpipe demo``.
Errors jwpipe raises on purpose are printed as one line and exit with status 2 (``--debug`` shows
the traceback); one failed input does not stop the others.
"""

from __future__ import annotations

import argparse
import sys

from .errors import ConfigError, JwpipeError

__all__ = ["main", "build_parser"]

EXIT_BAD_INPUT = 2


def _pipeline_help() -> str:
    from .driver import PIPELINE_ALIASES
    from .steps import KNOWN_STEPS, implemented_steps

    done = set(implemented_steps())
    lines = ["pipelines (alias -> configuration):"]
    lines += [f"  {alias:<10} {cfg}" for alias, cfg in PIPELINE_ALIASES.items()]
    lines.append("")
    lines.append("steps (* = implemented in this version):")
    names = [f"{'*' if n in done else ' '}{n}" for n in KNOWN_STEPS]
    for i in range(0, len(names), 4):
        lines.append("  " + "".join(f"{n:<24}" for n in names[i:i + 4]))
    lines.append("")
    lines.append("other commands: simulate (synthetic observatory), demo (end-to-end run)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jwpipe",
        description="Fast JWST calibration pipeline. Example: python -m jwpipe detector1 "
                    "jw01234001001_01101_00001_nrca1_uncal.fits --steps.jump.rejection_threshold=5",
        epilog=_pipeline_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pipeline", help="pipeline alias (detector1, tso1, dark, image2, ...) or "
                                         "a .cfg file")
    parser.add_argument("inputs", nargs="+", help="input files (.fits) or associations (.json)")
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir", default=".",
                        help="folder for products (default: current folder)")
    parser.add_argument("--override", action="append", default=[], metavar="REFTYPE=FILE",
                        help="use FILE (or N/A) for reference type REFTYPE in every step")
    parser.add_argument("--save-calibrated-ramp", "--save_calibrated_ramp", action="store_true",
                        dest="save_calibrated_ramp", help="stage 1: also write the _ramp product")
    parser.add_argument("--crds-path", dest="crds_path", default=None,
                        help="local CRDS cache (default: $CRDS_PATH)")
    parser.add_argument("--jobs", type=int, default=1, help="inputs processed in parallel")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per compiled kernel (default: $JWPIPE_THREADS, else every "
                             "usable core shared among the --jobs; results do not depend on it)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return parser


def default_threads(jobs: int = 1) -> int:
    """Kernel threads when ``--threads`` is not given: ``$JWPIPE_THREADS``, else the cores this
    process may use divided among the ``jobs`` inputs processed in parallel."""
    import os

    env = os.environ.get("JWPIPE_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ConfigError(f"JWPIPE_THREADS={env!r} is not a number of threads") from None
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


def _parse_step_options(extra: list[str]) -> dict:
    """``--steps.jump.rejection_threshold=5`` -> ``{"jump": {"rejection_threshold": "5"}}``."""
    steps: dict[str, dict[str, str]] = {}
    pending = list(extra)
    while pending:
        item = pending.pop(0)
        if not item.startswith("--steps."):
            raise ConfigError(f"unrecognised argument {item!r} (see jwpipe --help)")
        body = item[len("--steps."):]
        if "=" in body:
            key, value = body.split("=", 1)
        elif pending:
            key, value = body, pending.pop(0)
        else:
            raise ConfigError(f"{item}: needs a value (--steps.<step>.<param>=<value>)")
        if "." not in key:
            raise ConfigError(f"{item}: expected --steps.<step>.<param>=<value>")
        alias, param = key.split(".", 1)
        steps.setdefault(alias, {})[param] = value
    return steps


def _parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--override {item!r}: expected REFTYPE=FILE or REFTYPE=N/A")
        reftype, value = item.split("=", 1)
        out[reftype.strip().lower()] = value.strip()
    return out


def _openmp_settings() -> None:
    """Idle OpenMP threads sleep instead of spinning (unless the user chose otherwise).

    The command line runs kernels on every core by default; a spinning thread then competes
    with the thread doing the work whenever another process uses a core, and kernels that open
    a parallel region per integration slow down many times over. Sleeping costs tens of
    microseconds per region on an idle machine. Must be set before the kernels are loaded.
    """
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _openmp_settings()
    from . import logs

    if argv and argv[0] == "simulate":
        logs.configure("INFO")
        from .simulate.command import add_parser, run

        parser = argparse.ArgumentParser(prog="jwpipe")
        add_parser(parser.add_subparsers(dest="command"))
        return _guard(lambda: run(parser.parse_args(argv)), "--debug" in argv)
    if argv and argv[0] == "demo":
        logs.configure("INFO")
        from .demo import main as demo_main

        return _guard(lambda: demo_main(argv[1:]), "--debug" in argv)
    if argv and argv[0] in ("show-config", "--show-config"):
        from . import show_config

        show_config()
        return 0

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    logs.configure("DEBUG" if args.verbose else "WARNING" if args.quiet else "INFO")
    log = logs.get_logger("cli")

    def go() -> int:
        from .driver import run_many_cli

        steps = _parse_step_options(extra)
        overrides = _parse_overrides(args.override)
        options = {"output_dir": args.output_dir, "save_results": True}
        if args.save_calibrated_ramp:
            options["save_calibrated_ramp"] = True
        if args.threads is not None and args.threads < 1:
            raise ConfigError(f"--threads {args.threads}: give a positive number of threads")
        threads = args.threads or default_threads(min(args.jobs, len(args.inputs)))
        spec = dict(cfg=args.pipeline, steps=steps, overrides=overrides,
                    crds_path=args.crds_path, threads=threads, options=options)
        # Build once up front so configuration mistakes fail before any work starts.
        from .driver import build_pipeline, require_implemented

        require_implemented(build_pipeline(args.pipeline, steps=steps, overrides=overrides,
                                           crds_path=args.crds_path, threads=threads,
                                           **options))
        failures = 0
        results = run_many_cli(spec, args.inputs, args.jobs)
        for item, result in zip(args.inputs, results, strict=True):
            if isinstance(result, BaseException):
                failures += 1
                if args.debug:
                    import traceback

                    traceback.print_exception(type(result), result, result.__traceback__)
                if isinstance(result, JwpipeError):
                    log.error("%s", result)
                else:
                    log.error("%s: failed: %s: %s", item, type(result).__name__, result)
        if failures:
            log.error("%d of %d input(s) failed", failures, len(args.inputs))
            return EXIT_BAD_INPUT
        return 0

    return _guard(go, args.debug)


def _guard(fn, debug: bool) -> int:
    try:
        return int(fn() or 0)
    except JwpipeError as exc:
        if debug:
            raise
        print(f"jwpipe: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("jwpipe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
