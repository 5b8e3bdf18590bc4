"""Invoke tasks: parse flags, call one function, print, map errors to exit codes. No logic here.

Run `invoke --list` for the tasks and `invoke --help TASK` for the flags of one.
"""

from __future__ import annotations

import functools

from invoke import Exit, task

from deploy.errors import DeployError, InventoryError
from pi_setup.errors import EmulatorError, WheelError
from retinaface.errors import ModelError

USER_ERRORS = (ModelError, InventoryError, DeployError, WheelError, EmulatorError)


def user_errors(func):
    """Turn a user error into one clear line on stderr and exit code 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as error:
            raise Exit(f"error: {error}", code=1) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper


# --- model tasks (retinaface/) ---


# --- deploy tasks (deploy/) ---


# --- emulator tasks (pi_setup/emulator.py) ---


# --- wheel tasks (pi_setup/ wheels) ---


# --- bench tasks ---
