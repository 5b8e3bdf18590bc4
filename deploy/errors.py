"""Errors for things the user did wrong on the deploy side; messages name the file, host or field."""


class InventoryError(Exception):
    """The inventory file is invalid; the message names the file, host and field."""


class DeployError(Exception):
    """A host could not be reached, trusted or deployed to; the message names the host."""


class UnreachableError(DeployError):
    """The host could not be connected to, or the connection was lost (the fleet recap says unreachable)."""


class AuthenticationError(UnreachableError):
    """The host refused every key offered (key file, ssh-agent, ~/.ssh/config identities)."""


class UnknownHostKeyError(UnreachableError):
    """The host's key is in no known_hosts file we trust; `invoke trust-host` records it."""


class ChangedHostKeyError(UnreachableError):
    """The host presented a key different from the recorded one: refused (possible interception)."""
