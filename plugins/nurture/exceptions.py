"""The few named errors Nurture raises; everything else is a bug."""

from __future__ import annotations


class NurtureError(Exception):
    """Base class for errors a user can act on."""


class ConfigurationError(NurtureError):
    """A connection, variable or environment setting is missing or malformed."""


class ProgramDefinitionError(NurtureError):
    """A program definition cannot compile into a DAG."""


class InvalidRunOptions(NurtureError):
    """What a run was triggered with cannot be honoured (a bad test address, an unknown
    step): refused before anything is planned or sent."""


class GuardFailed(NurtureError):
    """The data-quality guard refused the audience: nothing may be sent."""


class RunIncomplete(NurtureError):
    """A run ended without planning, or with planned messages no send task dispatched."""


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
        """Certainly not accepted, and likely to work later: the request never reached the
        provider, the provider asked us to slow down (429), or it refused our credentials
        (401/403: a key to fix, not a message to give up on)."""
        return not self.ambiguous and (self.status is None or self.status in (401, 403, 429))


class ProviderUnavailable(NurtureError):
    """Some messages of a batch could not reach the provider; they stay planned."""
