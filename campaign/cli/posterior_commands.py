"""Commands on a fitted surrogate: compile, sample, validate, explain."""

from __future__ import annotations

import click

from campaign import api
from campaign.cli import main
from campaign.cli.format import format_table, format_value

BACKEND_HELP = "Predictor of the surrogate: numba (flat trees), tl2cgen (shared library) or xgboost (no compilation)."

#: The names of campaign.surrogate.compiled.BACKENDS, repeated here so that --help
#: does not import XGBoost; a test checks that the two agree.
COMPILED_BACKENDS = ("numba", "tl2cgen", "xgboost")
#: campaign.posterior.MIN_WALKERS and MAX_SEED, repeated for the same reason; a test checks them.
MIN_WALKERS = 4
MAX_SEED = 2**32 - 1


@main.command("compile")
@click.argument("name")
@click.option("--version", type=int, help="Model version number. Default: the newest.")
@click.option("--backend", type=click.Choice(COMPILED_BACKENDS), default="numba", show_default=True, help=BACKEND_HELP)
@click.pass_obj
def compile_command(obj, name, version, backend):
    """Compile a model version's regressor and classifier into the local cache."""
    result = api.open_campaign(name, obj["db"]).compile(version, backend)
    if result["backend"] == "xgboost":
        predictor = "XGBoost's own predictor (nothing compiled)"
    elif result["seconds"] == 0:
        predictor = f"{result['backend']} predictor, loaded from the cache"
    else:
        predictor = f"{result['backend']} predictor, compiled in {result['seconds']:.2f} s"
    click.echo(f"Model version {result['model_version']}: {predictor}.")


@main.command()
@click.argument("name")
@click.option("--walkers", type=click.IntRange(min=MIN_WALKERS),
              help=f"Number of walkers (even, at least 2 per parameter and at least {MIN_WALKERS}). "
                   "Default: max(32, 4 per parameter).")
@click.option("--max-steps", type=int, default=20000, show_default=True, help="Maximum steps per walker.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED),
              help=f"Seed of the chain, 0 to {MAX_SEED}. Default: the campaign's seed.")
@click.option("--check-every", type=int, default=500, show_default=True,
              help="Steps between convergence checks and checkpoints.")
@click.option("--version", type=int, help="Model version number. Default: the newest.")
@click.option("--resume", type=int, metavar="CHAIN_ID", help="Continue an interrupted or unconverged chain.")
@click.option("--backend", type=click.Choice(COMPILED_BACKENDS), default="numba", show_default=True, help=BACKEND_HELP)
@click.option("--no-profiles", is_flag=True, help="Skip the best fit and the profile likelihoods.")
@click.pass_obj
def sample(obj, name, walkers, max_steps, seed, check_every, version, resume, backend, no_profiles):
    """Sample the surrogate posterior with emcee and store chain and summaries."""
    fit = api.open_campaign(name, obj["db"])
    result = fit.sample(walkers=walkers, max_steps=max_steps, seed=seed, check_every=check_every,
                        version=version, resume=resume, backend=backend, profiles=not no_profiles)
    state = "converged" if result["converged"] else "NOT converged (resume with a larger --max-steps)"
    click.echo(f"Chain {result['chain_id']}: {result['n_walkers']} walkers x {result['n_steps']} steps, {state}, "
               f"acceptance {result['acceptance_fraction']:.3f}, {result['n_samples']} samples stored "
               f"(burn-in {result['burn_in']}, thin {result['thin']}) in {result['seconds']:.1f} s")
    click.echo(format_table(
        ["parameter", "tau", "mean", "std", "median", "68% low", "68% high", "95% low", "95% high"],
        [[row["parameter"], result["tau"][row["parameter"]], row["mean"], row["std"], row["median"],
          row["q16"], row["q84"], row["q02_5"], row["q97_5"]] for row in result["summaries"]],
    ))
    if result["best_fit"]:
        click.echo(f"Best fit: chi2 {format_value(result['best_fit']['chi2'])} at "
                   + ", ".join(f"{k}={format_value(v)}" for k, v in result["best_fit"]["params"].items()))


@main.command()
@click.argument("name")
@click.option("--n", "n", type=int, default=50, show_default=True, help="Posterior samples to evaluate with the true likelihood.")
@click.option("--chain", "chain_id", type=int, help="Chain id. Default: the latest finished chain.")
@click.option("--workers", type=int, help="Evaluation processes. Default: the number of cores.")
@click.pass_obj
def validate(obj, name, n, chain_id, workers):
    """Evaluate the true likelihood at posterior samples and the best fit, and report residuals."""
    from campaign.validation import validation_caution

    result = api.open_campaign(name, obj["db"]).validate(n, chain_id=chain_id, workers=workers)
    stats = result["statistics"]
    click.echo(f"Validation {result['validation_id']} of chain {result['chain_id']} "
               f"(model version {result['model_version']}): {stats['n_finite']} of {stats['n']} points finite")
    click.echo(format_table(["residual (true - surrogate chi2)", "value"],
                            [[key, stats.get(key)] for key in ("mean", "std", "rms", "median_abs", "max_abs",
                                                               "best_fit_residual")]))
    caution = validation_caution(stats, name)
    if caution:
        click.echo(caution)


@main.command()
@click.argument("name")
@click.option("--version", type=int, help="Model version number. Default: the newest.")
@click.option("--plots", type=click.Path(file_okay=False), help="Directory for PNG plots (created if missing).")
@click.pass_obj
def explain(obj, name, version, plots):
    """Compute SHAP values of the regressor on the low-region points."""
    result = api.open_campaign(name, obj["db"]).explain(version, plots)
    click.echo(f"SHAP of model version {result['model_version']} on {result['n_points']} points "
               f"in {result['seconds']:.2f} s; base value {format_value(result['base_value'])}")
    shap = sorted(result["mean_abs_shap"].items(), key=lambda item: -item[1])
    click.echo(format_table(["parameter", "mean |SHAP|"], shap))
    pairs = sorted(result["mean_abs_interaction"].items(), key=lambda item: -item[1])[:10]
    if pairs:
        click.echo(format_table(["pair", "mean |interaction|"], pairs))
    for path in result["plots"]:
        click.echo(f"Wrote {path}")


def echo_posterior_results(fit) -> None:
    """Print the latest finished chain, its posterior table, best fit, profile intervals and the latest validation."""
    from campaign.profile import profile_caution
    from campaign.store.chains import latest_results
    from campaign.validation import validation_caution

    with fit.store.transaction() as session:
        results = latest_results(session, fit.id)
    chain = results["chain"]
    if chain is None:
        click.echo(f"\nChains: none yet; run `campaign sample {fit.name}`")
        return
    tau = ", ".join(f"{v:.1f}" for v in chain["tau"] or [])
    title = "Latest finished chain" if chain["status"] == "done" else "Latest chain"
    click.echo(f"\n{title} {chain['id']} ({chain['status']}, model version {format_value(chain['model_version'])}): "
               f"{chain['n_walkers']} walkers x {chain['n_steps']} steps, "
               f"acceptance {format_value(chain['acceptance_fraction'])}, tau [{tau}], "
               f"{'converged' if chain['converged'] else 'not converged'}")
    for chain_id, status, n_steps in results["unfinished"]:
        hint = f"; continue it with `campaign sample {fit.name} --resume {chain_id}`" if status == "interrupted" else ""
        click.echo(f"Chain {chain_id} is {status} after {n_steps} checkpointed steps, "
                   f"and its samples are not stored yet{hint}")
    if results["posterior"]:
        click.echo(format_table(
            ["parameter", "mean", "std", "median", "68% low", "68% high", "95% low", "95% high"],
            [[r["parameter"], r["mean"], r["std"], r["median"], r["q16"], r["q84"], r["q02_5"], r["q97_5"]]
             for r in results["posterior"]],
        ))
    best = results["best_fit"]
    if best is not None:
        click.echo(f"Best fit (surrogate): chi2 {format_value(best['chi2'])} at "
                   + ", ".join(f"{k}={format_value(v)}" for k, v in best["params"].items()))
    if results["profiles"]:
        click.echo("Profile likelihood intervals (delta chi2 = 1 and 3.84; - where the grid ends first):")
        click.echo(format_table(
            ["parameter", "68% low", "68% high", "95% low", "95% high"],
            [[r["parameter"], r["low_68"], r["high_68"], r["low_95"], r["high_95"]] for r in results["profiles"]],
        ))
        caution = profile_caution(chain["model_metrics"], chain["model_version"])
        if caution:
            click.echo(caution)
    validation = results["validation"]
    if validation is not None:
        click.echo(f"Latest validation {validation['id']} (chain {format_value(validation['chain_id'])}): "
                   f"residual true - surrogate chi2: mean {format_value(validation['mean'])}, "
                   f"rms {format_value(validation['rms'])}, max |.| {format_value(validation['max_abs'])} "
                   f"over {validation['n_finite']} points")
        caution = validation_caution(validation, fit.name)
        if caution:
            click.echo(caution)
