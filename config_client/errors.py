"""The client's exceptions: one base class and one subclass per way fetching can fail."""


class ConfigClientError(Exception):
    """Base class of every error the client raises."""


class ConfigUnavailable(ConfigClientError):
    """The server cannot be reached (and, at start-up, there is no last-known-good copy)."""


class ServerError(ConfigClientError):
    """The server answered with an error status; its message is kept."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"server answered {status}: {message}")
        self.status = status


class InvalidResponse(ConfigClientError):
    """The server's answer is not a valid Environment; it is never applied."""


class UnknownApplication(ConfigClientError):
    """The server holds no configuration file for the application (a misspelt name, perhaps): it
    would serve only the shared settings. Raised by a `strict` client instead of applying them."""

    def __init__(self, application: str, closest: str | None = None) -> None:
        hint = f"; did you mean {closest!r}?" if closest else ""
        super().__init__(
            f"the config server has no configuration file for application {application!r} "
            f"(it serves only the shared settings){hint}"
        )
        self.application = application
        self.closest = closest


class RejectedVersion(ConfigClientError):
    """A version the service must not run (a bound exceeded, an undecryptable value, or the
    service's own validation failed): it is not applied and the last good settings stay."""

    def __init__(self, version: str | None, reason: str) -> None:
        super().__init__(f"version {version} rejected: {reason}")
        self.version = version
        self.reason = reason
