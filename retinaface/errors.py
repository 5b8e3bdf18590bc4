"""Errors for things the user did wrong on the model side (bad weights, image, model file)."""


class ModelError(Exception):
    """A model, weights or image problem; the message names the file at fault."""


class SourceError(ModelError):
    """A camera, video file or stream URL that cannot be opened or read; names the source."""
