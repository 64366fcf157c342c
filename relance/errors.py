"""Errors of the Relance core. Anything a user can fix is one of these; the CLI prints
its message and exits non-zero, never a traceback.

    RelanceError
    ├── InputError                 bad input a user can fix
    │   ├── SequenceError          a sequence file does not load or validate (carries problems)
    │   ├── RoutingError           routing.yaml does not load or validate (carries problems)
    │   ├── ProspectError          a prospect, CSV row or column is wrong
    │   │   └── OptionError        a command-line option is wrong (the CLI exits 2)
    │   ├── RenderError            a template is missing, does not parse or does not render
    │   ├── NotFoundError          no such sequence, step, prospect or task
    │   └── SignatureError         a webhook's signature is missing, wrong or stale (403)
    ├── SettingsError              a setting (environment variable) is missing or wrong (exit 2)
    ├── StateError                 the action does not fit the enrollment's state
    ├── StoreError                 the store cannot be reached or migrated
    └── ChannelError               a channel could not deliver
        ├── PermanentChannelError  the provider refused (4xx): never retried
        ├── TransientChannelError  the provider did not take it: try again later (429, 5xx,
        │                          connection refused)
        └── UnconfirmedChannelError  the request went out but no answer came back (timeout,
                                   connection lost): it may have been accepted, never resent
"""

from __future__ import annotations

from relance.diagnostics import Problem, format_problems


class RelanceError(Exception):
    """Base of every error Relance raises on purpose."""


class InputError(RelanceError):
    """Bad input that the user can fix."""


class SequenceError(InputError):
    """A sequence file does not load or validate."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(format_problems(problems))


class RoutingError(InputError):
    """A routing file does not load or validate."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(format_problems(problems))


class ProspectError(InputError):
    """A prospect, CSV row or column is wrong."""


class OptionError(ProspectError):
    """A command-line option's value is wrong: the CLI exits 2, as for any usage error."""


class RenderError(InputError):
    """A template is missing, does not parse or does not render."""


class NotFoundError(InputError):
    """No such sequence, step, prospect or task."""


class SignatureError(InputError):
    """A webhook request whose signature is missing, malformed, wrong or too old."""


class SettingsError(RelanceError):
    """A setting (an environment variable) is wrong: nothing can run until it is fixed."""


class StateError(RelanceError):
    """The requested action does not fit the current state."""


class StoreError(RelanceError):
    """The store cannot be reached, created or migrated."""


class ChannelError(RelanceError):
    """A channel could not deliver."""


class PermanentChannelError(ChannelError):
    """The provider refused the message: retrying would not help."""


class TransientChannelError(ChannelError):
    """The provider could not take the message now: try again later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class UnconfirmedChannelError(ChannelError):
    """The request reached the provider but its answer did not come back: the message may
    have been accepted. The touch is flagged ``unknown`` and settled from the provider's
    events (``relance.recovery``), never resent blindly."""
