"""The Typer application, and the ``command`` decorator every command module uses.

``command`` turns a ``RelanceError`` into a clear message on stderr and exit code 1 (2 for
an ``OptionError``, like any usage error), so that bad input never shows a traceback,
whether the CLI runs from a shell or a test. A bad setting (``SettingsError``, or pydantic's
report on the environment) exits with code 2, naming the variable. A store error that
escaped the core is one line naming its kind, never the SQL nor its parameters (which carry
addresses and names).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError as PydanticSettingsError
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from relance.errors import OptionError, RelanceError, SettingsError
from relance.settings import settings_error
from relance.store import store_failure

app = typer.Typer(
    name="relance",
    help="B2B nurturing and follow-up sequences, written in YAML, run on Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

stderr = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise."""
    stderr.print(f"error: {message}", markup=False)
    return typer.Exit(code)


def command(*args: Any, parent: typer.Typer | None = None, **kwargs: Any) -> Callable[[F], F]:
    """``@app.command`` that reports RelanceError as a message and exit code 1 (2 for a
    wrong option value)."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*f_args: Any, **f_kwargs: Any) -> Any:
            try:
                return function(*f_args, **f_kwargs)
            except SettingsError as error:
                raise fail(str(error), 2) from None
            except RelanceError as error:
                raise fail(str(error), 2 if isinstance(error, OptionError) else 1) from None
            except (ValidationError, PydanticSettingsError) as error:
                if isinstance(error, ValidationError) and error.title != "Settings":
                    raise
                raise fail(str(settings_error(error)), 2) from None
            except SQLAlchemyError as error:
                raise fail(store_failure(error)) from None

        (parent or app).command(*args, **kwargs)(wrapper)
        return function

    return decorate
