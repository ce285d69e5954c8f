"""The package's exceptions: one base class, :class:`HRFormerError`, for everything hrformer refuses.

Each also subclasses the built-in type callers caught before it existed (``ValueError``,
``TypeError``, ``OSError``), so ``except ValueError`` keeps working. The command line prints these
(and missing files) as one line; any other exception is a bug and keeps its traceback.

==========================  ==========================  ==============================================
class                       built-in base               raised for
==========================  ==========================  ==============================================
``ConfigError``             ``ValueError``              an architecture field or saved config out of range
``CheckpointError``         ``ValueError``              a weights file that cannot be used
``CheckpointReadError``     (``CheckpointError``)       corrupt, truncated, or code-running pickles
``CheckpointLayoutError``   (``CheckpointError``)       keys / shapes that fit no layout or not the model
``WeightsUnavailableError`` ``OSError``                 weights that cannot be obtained (offline, 404)
``InputError``              ``ValueError``              an argument or input a function refuses
``InputTypeError``          ``TypeError``, InputError   an argument of the wrong type
``ResourceLimitError``      (``InputError``)            work that would exceed a memory / time budget
==========================  ==========================  ==============================================
"""

from __future__ import annotations

__all__ = [
    "CheckpointError", "CheckpointLayoutError", "CheckpointReadError", "ConfigError", "HRFormerError", "InputError",
    "InputTypeError", "ResourceLimitError", "WeightsUnavailableError",
]


class HRFormerError(Exception):
    """Base class of every error hrformer raises on purpose."""


class ConfigError(HRFormerError, ValueError):
    """An invalid architecture option or saved configuration (its message names the field)."""


class CheckpointError(HRFormerError, ValueError):
    """A checkpoint that cannot be used."""


class CheckpointReadError(CheckpointError):
    """The file is corrupt, truncated, or needs arbitrary code to unpickle."""


class CheckpointLayoutError(CheckpointError):
    """The checkpoint matches none of the known layouts, or not the model it should build."""


class WeightsUnavailableError(HRFormerError, OSError):
    """Weights could not be obtained: not published, not cached while offline, or a failed download."""


class InputError(HRFormerError, ValueError):
    """An argument or input (image, boxes, option) that a function refuses."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type."""


class ResourceLimitError(InputError):
    """Work whose memory or time would exceed the budget, refused before anything is allocated; the
    message gives the estimate and the way out."""
