"""Errors for the Pi-side setup: wheels and the emulated Pi."""


class WheelError(Exception):
    """A wheel could not be found, fetched, verified or built; the message names it."""


class EmulatorError(Exception):
    """The emulated Pi could not be built or started; the message says how to fix it."""
