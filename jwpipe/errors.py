"""The jwpipe exception hierarchy.

Every error jwpipe raises on purpose derives from :class:`JwpipeError` and from the builtin that
fits it, so ``except ValueError`` in user code keeps working. Messages name the file, extension and
keyword involved and say what the user can do; the CLI prints them without a traceback and exits 2.
"""

from __future__ import annotations

__all__ = [
    "JwpipeError",
    "ConfigError",
    "InputFileError",
    "NotFitsError",
    "MissingKeywordError",
    "ProductTypeError",
    "DataShapeError",
    "TableFormatError",
    "ReferenceFileError",
    "ReferenceNotFoundError",
    "StepNotImplementedError",
]


class JwpipeError(Exception):
    """Base class of every error jwpipe raises deliberately."""


class ConfigError(JwpipeError, ValueError):
    """A pipeline configuration, parameter or command-line option is invalid."""


class InputFileError(JwpipeError, OSError):
    """An input file cannot be used; the message names the file and, where known, the extension."""


class NotFitsError(InputFileError):
    """The file is not a FITS file (or is truncated)."""


class MissingKeywordError(InputFileError, KeyError):
    """A required header keyword is missing."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ProductTypeError(InputFileError, TypeError):
    """The file is a valid product, but of the wrong type for this pipeline or step."""


class DataShapeError(InputFileError, ValueError):
    """Array shapes disagree with header keywords (NGROUPS, NINTS, SUBSIZE...)."""


class TableFormatError(JwpipeError, ValueError):
    """A spectral table or catalog lacks a required extension or column, or cannot be parsed.

    The message names the file (or, before writing, the model attribute), extension and column.
    """


class ReferenceFileError(JwpipeError, ValueError):
    """A reference file is unreadable or does not match the exposure."""


class ReferenceNotFoundError(ReferenceFileError, LookupError):
    """No reference file of a needed type could be found (override, then local CRDS cache)."""


class StepNotImplementedError(JwpipeError, NotImplementedError):
    """A pipeline names steps that jwpipe does not implement yet."""
