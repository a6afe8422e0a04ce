"""One exception family: every error carries a message a person can act on."""

from __future__ import annotations


class FaceprintError(Exception):
    """Base of all faceprint errors; ``str(err)`` is the human message."""


class ImageError(FaceprintError):
    """An image could not be read: missing, corrupt, truncated, not an image, too large."""


class DatasetError(FaceprintError):
    """A folder of images (ROOT/NAME/*.jpg) or a data set's protocol file is missing or malformed."""


class NoFaceError(FaceprintError):
    """An operation needed a face and the image has none."""


class ManyFacesError(FaceprintError):
    """An operation needed exactly one face and the image has several."""


class ModelError(FaceprintError):
    """A model is unknown, its weight file is missing or damaged, or it failed to load."""


class GalleryError(FaceprintError):
    """A gallery could not be opened or changed (damaged file, foreign database, mixed embedders)."""


class ErasureError(GalleryError):
    """Records were deleted, but their bytes could not be erased from storage yet (another connection
    still reads an older snapshot of the gallery); the message says how to finish the erasure."""


class InvalidNameError(GalleryError):
    """A person's name is refused by the name policy (``faceprint.names``): the message says why."""
