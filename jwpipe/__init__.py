"""jwpipe: a fast re-implementation of the JWST calibration pipeline."""

from __future__ import annotations

__version__ = "0.1.0"
