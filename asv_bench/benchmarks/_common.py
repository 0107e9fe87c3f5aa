"""Shared set-up for benchmarks: synthetic full-frame products written once per session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("JWPIPE_BENCH_DIR", Path(tempfile.gettempdir()) / "jwpipe_bench"))


def full_frame_uncal(ngroups: int = 10, nints: int = 1, ny: int = 2048, nx: int = 2048) -> Path:
    """A raw exposure file with realistic values (bias + ramp + noise), made once and reused."""
    from jwpipe.datamodels import Level1bModel

    path = CACHE / f"bench_{nints}x{ngroups}x{ny}x{nx}_uncal.fits"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = np.empty((nints, ngroups, ny, nx), np.uint16)
    rate = rng.gamma(2.0, 5.0, (ny, nx)).astype(np.float32)
    bias = rng.normal(12000, 50, (ny, nx)).astype(np.float32)
    for i in range(nints):
        for g in range(ngroups):
            frame = bias + rate * (g + 1) * 10.7 + rng.normal(0, 10, (ny, nx)).astype(np.float32)
            data[i, g] = np.clip(frame, 0, 65535).astype(np.uint16)
    model = Level1bModel(data=data)
    meta = model.meta
    meta.instrument.name, meta.instrument.detector = "NIRCAM", "NRCA1"
    meta.exposure.type, meta.exposure.readpatt = "NRC_IMAGE", "BRIGHT2"
    meta.exposure.ngroups, meta.exposure.nints = ngroups, nints
    meta.exposure.nframes, meta.exposure.groupgap = 2, 0
    meta.exposure.frame_time, meta.exposure.group_time = 10.73677, 21.47354
    meta.subarray.name = "FULL" if (ny, nx) == (2048, 2048) else "SUBARRAY"
    meta.subarray.xstart, meta.subarray.ystart = 1, 1
    meta.subarray.xsize, meta.subarray.ysize = nx, ny
    model.save(path)
    return path


def read_pass_ratio(kernel, ramp: np.ndarray, repeats: int = 15) -> float:
    """How many read passes over ``ramp`` the call ``kernel()`` takes (issue 4: the ramp-fit and
    jump kernels within 10x of the time it takes just to read the ramp from memory).

    A read pass is numpy's sum over the float32 ramp (one thread, streaming from memory). Both
    are timed alternately, ``repeats`` times each, and the fastest of each taken, so that the
    ratio compares them in the same phase of a shared machine whose speed drifts 15-20% from
    minute to minute.
    """
    import time

    kernel_times, read_times = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.add.reduce(ramp, axis=None)
        read_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        kernel()
        kernel_times.append(time.perf_counter() - t0)
    return min(kernel_times) / min(read_times)


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# -- running a benchmark module without asv --------------------------------------------------------

def child_peak_mb(rusage) -> float:
    """Peak resident memory (MB) of a finished child from its ``os.wait4`` rusage (Linux: KiB)."""
    import sys

    scale = 1.0 / 2**20 if sys.platform == "darwin" else 1.0 / 1024.0
    return rusage.ru_maxrss * scale


def run_process(argv, *, cwd=None, env=None, timeout=None) -> tuple[float, float, str]:
    """Run ``argv`` as a child process: (wall seconds, the child's own peak RSS in MB, output).

    The peak comes from ``os.wait4`` on that child alone (``getrusage(RUSAGE_CHILDREN)`` would
    report the largest of every child this process ever waited for). On Linux it also counts
    this process's own peak so far (``exec`` keeps the replaced address space's high-water
    mark): call this from a process that has stayed small. Raises on a non-zero exit.
    """
    import subprocess
    import tempfile
    import time

    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = None if timeout is None else t0 + timeout
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise TimeoutError(f"{argv[:4]}... took more than {timeout} s")
            time.sleep(0.005)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited with {proc.returncode}:\n{text}")
    return seconds, child_peak_mb(rusage), text


def _benchmark_classes(namespace: dict) -> list[type]:
    kinds = ("time_", "peakmem_", "track_")
    return [obj for name, obj in namespace.items()
            if isinstance(obj, type) and not name.startswith("_")
            and obj.__module__ == namespace["__name__"]
            and any(m.startswith(kinds) for m in dir(obj))]


def _param_sets(cls) -> list[tuple]:
    import itertools

    params = getattr(cls, "params", None)
    if not params:
        return [()]
    if not isinstance(params[0], (list, tuple)):
        params = [params]
    return list(itertools.product(*params))


def _child(namespace: dict, spec: str, cache_json: str, repeat: int) -> None:
    """Run one benchmark (``Class.method:index``) in this process and print a JSON result."""
    import json
    import resource
    import statistics
    import time

    target, index = spec.rsplit(":", 1)
    cls_name, method = target.split(".")
    cls = namespace[cls_name]
    args = _param_sets(cls)[int(index)]
    cache = json.loads(cache_json)
    lead = (cache,) if hasattr(cls, "setup_cache") else ()
    bench = cls()
    if hasattr(bench, "setup"):
        bench.setup(*lead, *args)
    fn = getattr(bench, method)
    result = {"unit": "", "value": None}
    try:
        if method.startswith("time_"):
            times = []
            for _ in range(max(1, repeat)):
                t0 = time.perf_counter()
                fn(*lead, *args)
                times.append(time.perf_counter() - t0)
            result = {"unit": "s", "value": statistics.median(times)}
        elif method.startswith("peakmem_"):
            fn(*lead, *args)
            result = {"unit": "MB", "value": None}
        else:
            result = {"unit": getattr(fn, "unit", getattr(cls, "unit", "")),
                      "value": fn(*lead, *args)}
    finally:
        if hasattr(bench, "teardown"):
            bench.teardown(*lead, *args)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if method.startswith("peakmem_"):
        result["value"] = result["peak_mb"]
    print("@@RESULT@@" + json.dumps(result))


def run_as_script(namespace: dict, argv=None) -> int:
    """``python asv_bench/benchmarks/<module>.py``: run every benchmark of a module without asv.

    Each benchmark runs in a fresh child process (as asv does), so peak memory figures are those
    of one benchmark. Prints one row per benchmark: its value (time_: median seconds of
    ``--repeat`` calls; peakmem_: the process's peak RSS; track_: the returned figure) and the
    child's peak resident memory. ``-k TEXT`` keeps benchmarks whose name contains TEXT.
    """
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(description=namespace.get("__doc__", "").split("\n")[0])
    parser.add_argument("-k", dest="select", action="append", default=[],
                        help="only benchmarks whose Class.method(params) contains this text")
    parser.add_argument("--repeat", type=int, default=3, help="calls per time_ benchmark")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cache", default="null", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(namespace, args.child, args.cache, args.repeat)
        return 0
    script = namespace["__file__"]
    rows = []
    print(f"{'benchmark':<64} {'value':>12} {'peak RSS':>10}")
    for cls in _benchmark_classes(namespace):
        methods = sorted(m for m in dir(cls) if m.startswith(("time_", "peakmem_", "track_")))
        sets = _param_sets(cls)
        chosen = []
        for index, values in enumerate(sets):
            label = ", ".join(map(str, values))
            for method in methods:
                name = f"{cls.__name__}.{method}({label})"
                if not args.select or any(s in name for s in args.select):
                    chosen.append((index, method, name))
        if not chosen:
            continue
        cache = None
        if hasattr(cls, "setup_cache"):
            cache = cls().setup_cache()
        for index, method, name in chosen:
            cmd = [sys.executable, script, "--child", f"{cls.__name__}.{method}:{index}",
                   "--cache", json.dumps(cache), "--repeat", str(args.repeat)]
            try:
                _, _, text = run_process(cmd)
                line = next(ln for ln in text.splitlines() if ln.startswith("@@RESULT@@"))
                res = json.loads(line[len("@@RESULT@@"):])
                value = f"{res['value']:.3f} {res['unit']}" if isinstance(
                    res["value"], (int, float)) else str(res["value"])
                row = f"{name:<64} {value:>12} {res['peak_mb']:>7.0f} MB"
            except Exception as exc:  # report and go on, as asv does
                row = f"{name:<64} {'failed':>12}  ({str(exc).strip().splitlines()[-1][:80]})"
            rows.append(row)
            print(row, flush=True)
    return 0
