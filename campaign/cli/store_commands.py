"""Commands on the store: create, list, show, db current, db upgrade."""

from __future__ import annotations

import math

import click
import yaml

from campaign import api
from campaign.cli import main
from campaign.cli.format import format_table, format_value
from campaign.config import load_campaign_file, parse_campaign
from campaign.errors import ConfigError
from campaign.store import Store
from campaign.store.engine import safe_url
from campaign.store.schema import current_revision, head_revision, upgrade


def _parse_parameter_flag(text: str) -> tuple[str, dict]:
    parts = text.split(":")
    if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] not in ("linear", "log")):
        raise click.BadParameter(
            f"{text!r}; expected NAME:LOW:HIGH or NAME:LOW:HIGH:log, e.g. x:-5:5", param_hint="--parameter"
        )
    name, low, high = parts[:3]
    try:
        spec = {"low": float(low), "high": float(high)}
    except ValueError:
        raise click.BadParameter(f"{text!r}; LOW and HIGH must be numbers", param_hint="--parameter") from None
    if len(parts) == 4:
        spec["scale"] = parts[3]
    return name, spec


def _parse_setting_flag(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r}; expected KEY=VALUE, e.g. batch_size=16", param_hint="--set")
    return key, yaml.safe_load(value)


@main.command()
@click.argument("name", required=False)
@click.option("-f", "--file", "path", type=click.Path(dir_okay=False), help="YAML campaign file.")
@click.option("-p", "--parameter", "parameters", multiple=True, metavar="NAME:LOW:HIGH[:log]",
              help="A parameter and its bounds; repeat for each parameter.")
@click.option("-l", "--likelihood", metavar="MODULE:FUNCTION",
              help="Python likelihood, 'package.module:function' or 'path/to/file.py:function'.")
@click.option("--command", "command", metavar="'PROGRAM ARGS'",
              help="External likelihood command that reads JSON on stdin and writes JSON on stdout.")
@click.option("--returns", type=click.Choice(["chi2", "loglike"]), default="chi2", show_default=True,
              help="What the likelihood returns.")
@click.option("--likelihood-version", default="1", show_default=True, help="Version string of the likelihood code.")
@click.option("--timeout", type=float, help="Per-evaluation time limit in seconds.")
@click.option("--description", default="", help="One-line description.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="A campaign setting, e.g. batch_size=16.")
@click.option("--no-check", is_flag=True, help="Do not import the likelihood before storing the campaign.")
@click.pass_obj
def create(obj, name, path, parameters, likelihood, command, returns, likelihood_version, timeout,
           description, settings, no_check):
    """Create a campaign from a YAML file or from flags.

    \b
    campaign create --file examples/gaussian-4d/campaign.yaml
    campaign create toy -p x:-5:5 -p y:-5:5 -l mypackage.fits:chi2
    """
    if path:
        if parameters or likelihood or command:
            raise click.UsageError("give either --file or --parameter/--likelihood flags, not both")
        spec = load_campaign_file(path)
        if name and name != spec.name:
            spec = parse_campaign({**_spec_as_dict(spec), "name": name})
    else:
        spec = parse_campaign(_spec_from_flags(
            name, parameters, likelihood, command, returns, likelihood_version, timeout, description, settings
        ))
    fit = api.create_campaign(spec, obj["db"], check=not no_check)
    click.echo(f"Created campaign {fit.name!r} with {fit.space.dim} parameters in {safe_url(fit.store.url)}.")


def _spec_from_flags(name, parameters, likelihood, command, returns, version, timeout, description, settings):
    if not name:
        raise click.UsageError("give a campaign NAME, or a campaign file with --file")
    if not parameters:
        raise click.UsageError("give at least one --parameter NAME:LOW:HIGH, or a campaign file with --file")
    if bool(likelihood) == bool(command):
        raise click.UsageError("give exactly one of --likelihood MODULE:FUNCTION and --command 'PROGRAM ARGS'")
    space = {}
    for text in parameters:
        key, spec = _parse_parameter_flag(text)
        if key in space:
            raise ConfigError(f"parameters: {key!r} is given twice; each parameter name may appear once")
        space[key] = spec
    likelihood_spec = {"returns": returns, "version": version}
    if likelihood:
        likelihood_spec["python"] = likelihood
    else:
        likelihood_spec["command"] = command.split()
    if timeout is not None:
        likelihood_spec["timeout"] = timeout
    return {
        "name": name,
        "description": description,
        "parameters": space,
        "likelihood": likelihood_spec,
        "settings": dict(_parse_setting_flag(text) for text in settings),
    }


def _spec_as_dict(spec) -> dict:
    return {
        "name": spec.name,
        "description": spec.description,
        "parameters": spec.space.to_dict(),
        "likelihood": spec.likelihood.to_dict() if spec.likelihood.timeout else
        {k: v for k, v in spec.likelihood.to_dict().items() if k != "timeout"},
        "settings": spec.settings.to_dict(),
    }


@main.command()
@click.argument("name")
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False),
              help="YAML campaign file with the new definition.")
@click.option("--force", is_flag=True,
              help="Allow changing bounds, priors or the likelihood of a campaign that has points.")
@click.option("--no-check", is_flag=True, help="Do not import the likelihood before storing the change.")
@click.pass_obj
def update(obj, name, path, force, no_check):
    """Change a campaign's definition from a YAML file and print the differences.

    Settings and the description may always change. Bounds, priors and the
    likelihood (reference or version) of a campaign with points change only
    with --force. Points of an older likelihood version are then kept but
    no longer used for training.
    """
    spec = load_campaign_file(path)
    if spec.name != name:
        raise ConfigError(f"{path} defines campaign {spec.name!r}, not {name!r}; a campaign cannot be renamed")
    _, changes = api.update_campaign(spec, obj["db"], force=force, check=not no_check)
    if not changes:
        click.echo(f"Campaign {name!r} is unchanged.")
        return
    click.echo(f"Updated campaign {name!r}:")
    for section, lines in changes.items():
        click.echo(f"  {section}:")
        for line in lines:
            click.echo(f"    {line}")


@main.command("allow")
@click.argument("name")
@click.pass_obj
def allow_command(obj, name):
    """Allow this machine to run the likelihood of campaign NAME.

    A campaign in a shared database names code to run: a module, a file or
    a command. Workers and steps on this machine run it only once it is
    allowed here; inspect the reference shown by `campaign show NAME` first.
    """
    key, added = api.allow_likelihood(name, obj["db"])
    click.echo(f"{'Allowed' if added else 'Already allowed'} on this machine: {key}")


@main.command("list")
@click.pass_obj
def list_command(obj):
    """List the campaigns in the database."""
    rows = api.campaigns(obj["db"])
    if not rows:
        click.echo("No campaigns yet. Create one with `campaign create --file CAMPAIGN.yaml`.")
        return
    click.echo(format_table(
        ["name", "dim", "points", "best chi2", "created by", "description"],
        [[r["name"], r["dim"], r["points"], r["best_chi2"], r["created_by"], r["description"]] for r in rows],
    ))


@main.command()
@click.argument("name")
@click.pass_obj
def show(obj, name):
    """Show a campaign: definition, points by status and best chi2."""
    info = api.open_campaign(name, obj["db"]).describe()
    click.echo(f"Campaign {info['name']}: {info['description']}")
    click.echo(f"Created by {info['created_by']} on {info['created_host']} at {format_value(info['created_at'])}")
    click.echo("")
    click.echo(format_table(
        ["parameter", "low", "high", "scale", "prior"],
        [[n, p["low"], p["high"], p["scale"], _prior_text(p["prior"])] for n, p in info["parameters"].items()],
    ))
    like = info["likelihood"]
    source = like.get("python") or " ".join(like["command"])
    timeout = f", timeout {like['timeout']:g} s" if like.get("timeout") else ""
    click.echo(f"\nLikelihood: {source} (returns {like['returns']}, version {like['version']}{timeout})")
    settings = info["settings"]
    click.echo("Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    click.echo(f"Low region: chi2 < chi2_min + {info['delta_chi2']:.4g}")
    counts = info["counts"]
    click.echo("\nPoints: " + ", ".join(f"{counts[s]} {s}" for s in counts) + f" ({sum(counts.values())} in all)")
    best = info["best_chi2"]
    click.echo(f"Best chi2: {format_value(best) if best is not None and math.isfinite(best) else 'none yet'}")
    click.echo(f"SQL views: {', '.join(info['views'])}")

    from campaign.cli.step_commands import echo_steps_and_models

    echo_steps_and_models(api.open_campaign(name, obj["db"]))

    from campaign.cli.posterior_commands import echo_posterior_results

    echo_posterior_results(api.open_campaign(name, obj["db"]))


def _prior_text(prior: dict) -> str:
    kind, args = next(iter(prior.items()))
    return kind + (f"({', '.join(f'{k}={v:g}' for k, v in args.items())})" if args else "")


@main.group()
def db():
    """Inspect and upgrade the database schema."""


@db.command()
@click.pass_obj
def current(obj):
    """Print the schema revision of the database and of this version of campaign."""
    store = Store(obj["db"], check_schema=False)
    revision = current_revision(store.engine)
    head = head_revision()
    if revision == head:
        state = "up to date"
    elif revision is None:
        state = "empty"
    else:
        state = "needs `campaign db upgrade`"
    click.echo(f"{safe_url(store.url)}: revision {revision or 'none'} "
               f"(this version of campaign expects {head}; {state})")


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_obj
def upgrade_command(obj, revision):
    """Create or migrate the schema to the newest revision."""
    store = Store(obj["db"], check_schema=False)
    before, after = upgrade(store.engine, revision)
    if before == after:
        click.echo(f"{safe_url(store.url)}: already at revision {after}.")
    else:
        click.echo(f"{safe_url(store.url)}: upgraded from {before or 'empty'} to {after}.")
