"""User-facing errors. Every message must make sense to a clinician reading it in the Slicer panel."""


class RadSynthError(Exception):
    """Base class for mistakes in user input or set-up; the operation changed nothing."""


class InvalidImageError(RadSynthError):
    """The image cannot be used (wrong dimensionality, not CT, unreadable)."""


class InvalidMaskError(RadSynthError):
    """The mask is empty, outside the image, or unusable."""


class UnknownLabelError(InvalidMaskError):
    """A label map holds values (or segment names) its label scheme does not know (defined here so that the worker
    hands it back as itself)."""


class ModelError(RadSynthError):
    """A model folder is missing, corrupt, or does not fit the request."""


class CancelledError(RadSynthError):
    """The user cancelled the operation; nothing was written."""


class WorkerError(RadSynthError):
    """The background worker failed or stopped unexpectedly."""


class InvalidOptionError(RadSynthError):
    """An option value is of the wrong type or outside its range."""


class OutputError(RadSynthError):
    """A result could not be written where asked (a folder that cannot be written, a full disk, a name that is
    an input); nothing new was left behind."""
