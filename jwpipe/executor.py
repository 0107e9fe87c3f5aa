"""One interface for running many inputs: serially, in threads or in processes.

``Executor.map(fn, items)`` returns results in input order, with an exception object in place of
the result of an input that failed, so one bad file never stops the others. A distributed engine
(e.g. Dask) plugs in by implementing the same ``map``.
"""

from __future__ import annotations

import concurrent.futures as cf
from typing import Callable, Iterable, Protocol

from .logs import get_logger

__all__ = ["Executor", "SerialExecutor", "ThreadExecutor", "ProcessExecutor", "get_executor",
           "run_many"]

log = get_logger("executor")


class Executor(Protocol):
    def map(self, fn: Callable, items: Iterable) -> list: ...


class SerialExecutor:
    """Run items one after the other in this process."""

    def map(self, fn, items):
        out = []
        for item in items:
            try:
                out.append(fn(item))
            except Exception as exc:  # reported per input by the caller
                out.append(exc)
        return out


class _PoolExecutor:
    pool_class: type = cf.ThreadPoolExecutor

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))

    def map(self, fn, items):
        items = list(items)
        with self.pool_class(max_workers=self.workers) as pool:
            futures = [pool.submit(fn, item) for item in items]
            out = []
            for future in futures:
                try:
                    out.append(future.result())
                except Exception as exc:
                    out.append(exc)
        return out


class ThreadExecutor(_PoolExecutor):
    """Threads: useful because every kernel releases the GIL."""

    pool_class = cf.ThreadPoolExecutor


class ProcessExecutor(_PoolExecutor):
    """Processes: full isolation per input (results are pickled back)."""

    pool_class = cf.ProcessPoolExecutor


def get_executor(jobs: int = 1, kind: str = "process") -> Executor:
    if jobs <= 1:
        return SerialExecutor()
    return ProcessExecutor(jobs) if kind == "process" else ThreadExecutor(jobs)


class _Bound:
    """A picklable ``functools.partial(run_one, spec)``."""

    def __init__(self, spec):
        self.spec = spec

    def __call__(self, item):
        from .driver import run_one

        return run_one(self.spec, item)


def run_many(spec: dict, inputs: list, jobs: int = 1, kind: str = "process") -> list:
    """Run the pipeline described by ``spec`` on every input through an executor."""
    return get_executor(jobs, kind).map(_Bound(spec), inputs)
