"""Commands that add and evaluate points: add-points, evaluate, worker."""

from __future__ import annotations

import signal

import click

from campaign import api
from campaign.cli import main
from campaign.space import DESIGNS


@main.command("add-points")
@click.argument("name")
@click.option("--design", type=click.Choice(DESIGNS), help="Space-filling design from scipy.stats.qmc.")
@click.option("--n", "n", type=click.IntRange(min=1), help="Number of design points.")
@click.option("--seed", type=click.IntRange(min=0),
              help="Seed of the design. Default: derived from the campaign seed and the number of stored points.")
@click.option("--from-csv", "csv_path", type=click.Path(dir_okay=False),
              help="CSV file with one column per parameter, an optional chi2 column (rows with a chi2 are "
              "stored as done) and optional output columns.")
@click.pass_obj
def add_points(obj, name, design, n, seed, csv_path):
    """Add pending points from a design, or points from a CSV file.

    \b
    campaign add-points toy --design sobol --n 128
    campaign add-points toy --from-csv evaluated_elsewhere.csv
    """
    from campaign.evaluation import add_design, add_points_from_csv

    if (design is None) == (csv_path is None):
        raise click.UsageError("give either --design with --n, or --from-csv FILE")
    if design is not None and n is None:
        raise click.UsageError("--design needs --n, the number of points")
    if csv_path is not None and (n is not None or seed is not None):
        raise click.UsageError("--n and --seed apply to --design, not to --from-csv")

    fit = api.open_campaign(name, obj["db"])
    if design is not None:
        ids = add_design(fit, n, design, seed=seed)
        click.echo(f"Added {len(ids)} {design} points to {name!r} (ids {ids[0]}-{ids[-1]}).")
    else:
        ids = add_points_from_csv(fit, csv_path)
        click.echo(f"Imported {len(ids)} points from {csv_path} into {name!r}.")


@main.command()
@click.argument("name")
@click.option("--workers", type=click.IntRange(min=1),
              help="Evaluation processes (or Dask LocalCluster workers). Default: the number of cores.")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="Where likelihoods run: a local process pool, or a Dask cluster.")
@click.option("--scheduler", metavar="ADDRESS",
              help="Dask scheduler address, e.g. tcp://10.0.0.5:8786. Default: start a LocalCluster.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar on stderr.")
@click.pass_obj
def evaluate(obj, name, workers, executor, scheduler, progress):
    """Evaluate the campaign's pending points and wait for them.

    Ctrl-C records finished results, returns unfinished points to pending
    and exits with status 130.
    """
    from campaign.evaluation import evaluate_pending

    fit = api.open_campaign(name, obj["db"])
    summary = evaluate_pending(fit, workers=workers, executor=executor, scheduler=scheduler, progress=progress)
    click.echo(_summary_line(summary))


@main.command()
@click.argument("name")
@click.option("--max-points", type=click.IntRange(min=1), help="Exit after claiming this many points.")
@click.option("--idle-exit", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Exit after this many seconds without pending points. Default: keep polling.")
@click.option("--poll", "poll_seconds", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              metavar="SECONDS", help="Interval between claims while no point is pending, in seconds.")
@click.pass_obj
def worker(obj, name, max_points, idle_exit, poll_seconds):
    """Claim pending points from the database, evaluate them, record the results.

    Start as many workers as you like, on any machine that reaches the
    database. SIGINT (Ctrl-C) and SIGTERM return the point in progress to
    pending and exit with status 130.
    """
    from campaign.evaluation import run_worker

    # Batch systems such as SLURM send SIGTERM before killing a job.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    fit = api.open_campaign(name, obj["db"])
    summary = run_worker(fit, max_points=max_points, idle_exit=idle_exit, poll_seconds=poll_seconds)
    click.echo(_summary_line(summary))


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _summary_line(summary) -> str:
    text = f"{summary.done} done, {summary.failed} failed in {summary.seconds:.1f} s"
    if summary.retried:
        text += f"; {summary.retried} evaluation(s) crashed and were retried"
    if summary.dropped:
        text += f"; {summary.dropped} late result(s) dropped"
    return text + "."
