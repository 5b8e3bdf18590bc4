"""Errors for things the user did wrong on the model side (bad weights, image, model file)."""


class ModelError(Exception):
    """A model, weights or image problem; the message names the file at fault."""


class SourceError(ModelError):
    """A camera, video file or stream URL that cannot be opened or read; names the source."""


class SettingError(ModelError):
    """A setting of a config object has a bad value. The message names the setting as
    `{setting}`; the command line shows its flag there (`--size`), library callers its name."""

    def __init__(self, setting, message):
        self.setting = setting
        self.template = message
        ModelError.__init__(self, message.replace("{setting}", setting))

    def shown_as(self, name):
        """The message with the setting called `name` (e.g. its command-line flag)."""
        return self.template.replace("{setting}", name)
