"""Errors for things the user did wrong on the deploy side; messages name the file, host or field."""


class InventoryError(Exception):
    """The inventory file is invalid; the message names the file, host and field."""


class DeployError(Exception):
    """A host could not be reached, trusted or deployed to; the message names the host."""
