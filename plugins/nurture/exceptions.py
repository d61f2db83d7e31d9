"""The few named errors Nurture raises; everything else is a bug."""

from __future__ import annotations


class NurtureError(Exception):
    """Base class for errors a user can act on."""


class ConfigurationError(NurtureError):
    """A connection, variable or environment setting is missing or malformed."""


class ProgramDefinitionError(NurtureError):
    """A program definition cannot compile into a DAG."""


class GuardFailed(NurtureError):
    """The data-quality guard refused the audience: nothing may be sent."""


class DispatchIncomplete(NurtureError):
    """A run ended with planned messages that no send task dispatched."""


class ProviderError(NurtureError):
    """A provider answered a send with an error status.

    `ambiguous` is true when the provider may have accepted the message anyway (timeout, 5xx
    after the request left): such a message must not be re-sent automatically.
    """

    def __init__(self, message: str, *, status: int | None, code: str | None = None,
                 ambiguous: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.ambiguous = ambiguous

    @property
    def retryable(self) -> bool:
        """Certainly not accepted, and likely to work later: the provider was unreachable
        (connection refused) or asked us to slow down (429)."""
        return not self.ambiguous and (self.status is None or self.status == 429)


class ProviderUnavailable(NurtureError):
    """Some messages of a batch could not reach the provider; they stay planned."""
