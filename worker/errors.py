"""The whole exception tree of the newsletter worker.

Every error carries its facts as attributes and a message that can be shown to a user on one
line. The CLI turns them into exit codes and the web app into HTTP answers, each in one place.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base class: something a user can read and act on."""

    exit_code = 1


class ConfigError(NewsletterError):
    """A setting is missing or has a bad value."""

    exit_code = 2

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class InputError(NewsletterError):
    """Bad input from a user: a file, an argument, a form field."""

    exit_code = 2


class RecordError(InputError):
    """One record of an import is invalid."""

    def __init__(self, where: str, field: str, problem: str) -> None:
        super().__init__(f"{where}: {field}: {problem}")
        self.where = where
        self.field = field
        self.problem = problem


class FieldError(InputError):
    """Bad input in named fields (an API body or query): ``{field: problem}``."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class NotFound(NewsletterError):
    """The thing asked for does not exist (an edition for a week, a subscriber)."""

    exit_code = 1


class Conflict(NewsletterError):
    """What was asked is not allowed in the thing's current state (a paused edition sent)."""

    exit_code = 1


class BrokerUnavailable(NewsletterError):
    """Redis, embedded or not, cannot be reached or started."""

    exit_code = 3


class DatabaseUnavailable(NewsletterError):
    """The database cannot be reached or migrated."""

    exit_code = 3


class InvalidToken(NewsletterError):
    """A signed token from a link or a VERP address is tampered with, expired or malformed."""


# --- sending -------------------------------------------------------------------------------


class DeliveryError(NewsletterError):
    """Sending one message failed; carries the SMTP code and text when there is one."""

    def __init__(self, recipient: str, code: int | None, text: str) -> None:
        label = f"{code} {text}" if code else text
        super().__init__(f"{recipient}: {label}")
        self.recipient = recipient
        self.code = code
        self.text = text


class TemporaryFailure(DeliveryError):
    """4xx reply, timeout or connection error: try again later."""


class ConnectionThrottled(TemporaryFailure):
    """421: the server closed the conversation; back off the whole connection."""


class UncertainDelivery(TemporaryFailure):
    """The message went out (the final dot was sent) but no reply came: the connection dropped
    or the reply timed out. The server may have taken it (SPEC §6: a send "in flight"); it is
    retried only through the normal backoff, and counted."""


class PermanentFailure(DeliveryError):
    """5xx reply at DATA or MAIL FROM: retrying will not help."""


class RecipientRefused(PermanentFailure):
    """5xx reply at RCPT TO: the address is refused (a bounce at send time)."""


# --- bounces and webhooks ------------------------------------------------------------------


class BounceParseError(NewsletterError):
    """A bounce message could not be understood; it is kept aside with this reason."""


class WebhookAuthError(NewsletterError):
    """A provider webhook failed verification (signature, credentials, replay window)."""


class WebhookPayloadError(NewsletterError):
    """A provider webhook body is malformed."""


# --- deliverability ----------------------------------------------------------------------------


class LookupFailed(NewsletterError):
    """A DNS query got no answer either way (timeout, SERVFAIL, no resolver)."""
