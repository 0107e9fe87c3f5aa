"""Logging helpers: per-step wall time and peak memory, and progress on long loops."""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
from contextlib import contextmanager

__all__ = ["get_logger", "configure", "peak_rss_mb", "current_rss_mb", "timed", "Progress"]

_ROOT = "jwpipe"


def get_logger(name: str) -> logging.Logger:
    """Return the jwpipe logger for module ``name``."""
    return logging.getLogger(name if name.startswith(_ROOT) else f"{_ROOT}.{name}")


def configure(level: int | str = "INFO", stream=None) -> None:
    """Send jwpipe log records to ``stream`` (stderr) with a short format. Idempotent."""
    logger = logging.getLogger(_ROOT)
    logger.setLevel(level if isinstance(level, int) else level.upper())
    for handler in list(logger.handlers):
        if getattr(handler, "_jwpipe", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    handler._jwpipe = True
    logger.addHandler(handler)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def current_rss_mb() -> float:
    """Current resident memory of this process, in MiB (0 where /proc is unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)
    except (OSError, ValueError, IndexError):
        return 0.0


@contextmanager
def timed(what: str, logger: logging.Logger | None = None, level: int = logging.INFO):
    """Log ``what`` with its wall time and the process's peak memory when the block ends.

    Yields a dict that receives ``seconds`` and ``peak_mb`` so callers can report them. A block
    that raises is logged as stopped (at DEBUG: the error itself is reported by the caller).
    """
    log = logger or get_logger("timing")
    record: dict[str, float] = {}
    start = time.perf_counter()
    failed = True
    try:
        yield record
        failed = False
    finally:
        record["seconds"] = time.perf_counter() - start
        record["peak_mb"] = peak_rss_mb()
        if failed:
            log.debug("%s stopped after %.2f s (peak memory %.0f MiB)", what,
                      record["seconds"], record["peak_mb"])
        else:
            log.log(level, "%s done in %.2f s (peak memory %.0f MiB)", what, record["seconds"],
                    record["peak_mb"])


class Progress:
    """A one-line progress display on an interactive stderr; silent otherwise.

    Parameters
    ----------
    total : int
        Number of units of work.
    label : str
        What is being counted, e.g. ``"integrations"``.
    """

    def __init__(self, total: int, label: str, stream=None, min_seconds: float = 1.0):
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self._start = time.perf_counter()
        self._last = 0.0
        self._min_seconds = min_seconds

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._start < self._min_seconds or now - self._last < 0.2:
            return
        self._last = now
        frac = self.done / self.total
        eta = (now - self._start) * (1 - frac) / frac if frac > 0 else 0.0
        self.stream.write(
            f"\r  {self.done}/{self.total} {self.label} ({frac:5.1%}, ~{eta:.0f} s left)")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._last:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
