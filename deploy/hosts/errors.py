"""Why a host could not be reached: the fleet recap counts these as unreachable."""

from deploy.errors import DeployError


class UnreachableError(DeployError):
    """The host could not be connected to, or the connection was lost (the fleet recap says unreachable)."""


class AuthenticationError(UnreachableError):
    """The host refused every key offered (key file, ssh-agent, ~/.ssh/config identities)."""


class UnknownHostKeyError(UnreachableError):
    """The host's key is in no known_hosts file we trust; `invoke trust-host` records it."""


class ChangedHostKeyError(UnreachableError):
    """The host presented a key different from the recorded one: refused (possible interception)."""
