"""The ``campaign`` command line: parse options, call the Python API, print.

Errors the user can fix exit with status 2 and one message; other failures
exit with status 1. ``--debug`` shows the traceback of either.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from campaign import __version__
from campaign.errors import CampaignError

__all__ = ["main"]

logger = logging.getLogger("campaign")

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: 128 + SIGPIPE, what a shell reports for a program whose reader went away.
EXIT_BROKEN_PIPE = 141


class CampaignGroup(click.Group):
    """A click group that turns exceptions into messages and exit statuses."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except CampaignError as exc:
            _report(ctx, exc, f"Error: {exc}")
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            # The reader (e.g. `| head`) closed the pipe: stop quietly, and keep
            # Python from failing again when it flushes stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(EXIT_BROKEN_PIPE)
        except Exception as exc:
            _report(ctx, exc, f"Error: {_describe_failure(ctx, exc)}\nRun again with --debug to see the traceback.")
            ctx.exit(EXIT_FAILURE)


def _describe_failure(ctx: click.Context, exc: Exception) -> str:
    """Describe an unexpected failure in one line; database errors name the (masked) URL."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        from campaign.store.engine import resolve_url, safe_url

        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        try:
            where = safe_url(resolve_url((ctx.obj or {}).get("db")))
        except CampaignError:
            where = "the database"
        return f"database error on {where}: {reason}"
    return f"{type(exc).__name__}: {exc}"


def _report(ctx: click.Context, exc: Exception, message: str) -> None:
    if (ctx.obj or {}).get("debug"):
        logger.error("command failed", exc_info=exc)
    click.echo(message, err=True)


@click.group(cls=CampaignGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="campaign")
@click.option(
    "--db", "db_url", envvar="CAMPAIGN_DATABASE_URL", default=None, metavar="URL",
    help="Database URL, e.g. sqlite:///campaign.db or postgresql://user@host/db. "
    "Default: $CAMPAIGN_DATABASE_URL, else sqlite:///campaign.db in the working directory.",
)
@click.option("-v", "--verbose", count=True, help="Log more: -v for progress, -vv for debugging.")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors and log at debug level.")
@click.pass_context
def main(ctx: click.Context, db_url: str | None, verbose: int, debug: bool) -> None:
    """Manage global-fit campaigns: points, surrogates, chains and summaries in one database."""
    level = logging.WARNING
    if debug or verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1:
        level = logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = {"db": db_url, "debug": debug}


# Each module registers its commands on ``main``.
from campaign.cli import store_commands  # noqa: E402,F401
from campaign.cli import share_commands  # noqa: E402,F401
from campaign.cli import step_commands  # noqa: E402,F401
from campaign.cli import posterior_commands  # noqa: E402,F401
from campaign.cli import evaluate_commands  # noqa: E402,F401
