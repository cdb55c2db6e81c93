"""Commands of active learning: step and run; and the steps and model versions shown by ``show``."""

from __future__ import annotations

import click

from campaign import api
from campaign.cli import main
from campaign.cli.format import format_table, format_value

_EXECUTORS = click.Choice(["local", "dask"])


@main.command()
@click.argument("name")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local evaluation processes. Default: the number of cores.")
@click.option("--executor", type=_EXECUTORS, default="local", show_default=True,
              help="Where likelihoods run: a local process pool or a Dask cluster.")
@click.option("--progress/--no-progress", default=False, help="Show a progress bar while evaluating.")
@click.pass_obj
def step(obj, name, workers, executor, progress):
    """Run one active-learning step: train the surrogate, propose a batch, evaluate it.

    The first step adds and evaluates the initial design. A step that was
    interrupted after storing its batch is finished instead.
    """
    fit = api.open_campaign(name, obj["db"])
    fit.step(workers=workers, executor=executor, echo=click.echo, progress=progress)


@main.command()
@click.argument("name")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Number of steps to run.")
@click.option("--until-converged", is_flag=True,
              help="Stop after the first step whose convergence criterion is met.")
@click.option("--max-evaluations", type=click.IntRange(min=1), default=None,
              help="Stop when the campaign has this many evaluated points (done or failed), "
              "the initial design included.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local evaluation processes. Default: the number of cores.")
@click.option("--executor", type=_EXECUTORS, default="local", show_default=True,
              help="Where likelihoods run: a local process pool or a Dask cluster.")
@click.option("--progress/--no-progress", default=False, help="Show a progress bar while evaluating.")
@click.pass_obj
def run(obj, name, steps, until_converged, max_evaluations, workers, executor, progress):
    """Repeat active-learning steps until a limit is reached.

    \b
    campaign run gaussian-4d --steps 5
    campaign run gaussian-4d --until-converged --max-evaluations 1000
    """
    if steps is None and not until_converged and max_evaluations is None:
        raise click.UsageError("give --steps N, --until-converged or --max-evaluations M")
    fit = api.open_campaign(name, obj["db"])
    reports = fit.run(steps=steps, until_converged=until_converged, max_evaluations=max_evaluations,
                      workers=workers, executor=executor, echo=click.echo, progress=progress)
    if not reports:
        click.echo(f"Nothing to do: the campaign has reached {max_evaluations} evaluated points.")
        return
    last = reports[-1]
    if last.converged:
        state = "converged"
    elif steps is not None and len(reports) >= steps:
        state = f"not converged; stopped after --steps {steps}"
    else:
        state = f"not converged; stopped at --max-evaluations {max_evaluations}"
    click.echo(f"Ran {len(reports)} step(s); best chi2 {format_value(last.best_chi2)}; {state}.")


def echo_steps_and_models(fit) -> None:
    """Print a campaign's steps and model versions, as ``campaign show`` ends."""
    from campaign.scheduler import describe_convergence, list_steps  # imported on use, to keep --help fast
    from campaign.surrogate.registry import list_model_versions

    steps = list_steps(fit)
    click.echo("\nSteps:" if steps else f"\nSteps: none yet; run `campaign step {fit.name}`")
    if steps:
        click.echo(format_table(
            ["step", "status", "phase", "model", "proposed", "evaluated", "failed", "best chi2", "seconds", "convergence"],
            [[s["number"], s["status"], s["phase"], s["model_version"], s["n_proposed"], s["n_evaluated"],
              s["n_failed"], s["best_chi2"], round(s["seconds"], 1),
              describe_convergence(s["convergence"], fit.settings) if s["convergence"] else "-"]
             for s in steps],
        ))
    with fit.store.transaction() as session:
        versions = [
            [v.version, v.training_mode, v.n_train, v.n_low, v.metrics.get("regressor_mae_low"),
             v.metrics.get("regressor_rmse_low"), v.metrics.get("classifier_accuracy"),
             v.metrics.get("classifier_auc"), round(v.training_seconds, 2)]
            for v in list_model_versions(session, fit.id)
        ]
    click.echo("\nModel versions:" if versions else "\nModel versions: none yet")
    if versions:
        click.echo(format_table(
            ["version", "mode", "n_train", "n_low", "MAE low", "RMSE low", "accuracy", "AUC", "fit seconds"], versions,
        ))
