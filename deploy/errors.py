"""Errors for things the user did wrong on the deploy side; messages name the file, host or field.

Shared by every room of deploy/ (hosts, workflow, results); the connection errors, which only
host access raises, are in deploy/hosts/errors.py.
"""


class InventoryError(Exception):
    """The inventory file is invalid; the message names the file, host and field."""


class DeployError(Exception):
    """A host could not be reached, trusted or deployed to; the message names the host."""
