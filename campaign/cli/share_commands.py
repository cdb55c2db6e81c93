"""Commands for collaborators: query, export, import and report."""

from __future__ import annotations

import click

from campaign import api
from campaign.cli import main
from campaign.cli.format import format_count, format_table
from campaign.sql import FORMATS, fetch_result, write_result


@main.command()
@click.argument("arguments", nargs=-1, required=True, metavar="[NAME] SQL")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format: an aligned table, csv, json (a list of row objects) or parquet. "
                   "NULL is '-' in the table, an empty csv cell and json null; NaN and infinities are "
                   "nan/inf/-inf in the table, NaN/inf/-inf in csv and the strings \"NaN\", \"Infinity\", "
                   "\"-Infinity\" in json.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the result to this file instead of standard output (required for parquet).")
@click.pass_obj
def query(obj, arguments, fmt, output):
    """Run one read-only SQL statement and print the rows.

    With a campaign NAME, the relations points, samples, models, chains,
    steps, validations, posterior_summaries, best_fits, profiles and
    shap_summaries show only that campaign. Points and samples have one
    column per parameter.

    \b
    campaign query toy "SELECT a, b, chi2 FROM points WHERE chi2 < 20 ORDER BY chi2"
    campaign query "SELECT name, created_by FROM campaigns" --format csv
    """
    if len(arguments) > 2:
        raise click.UsageError(
            f"expected [NAME] SQL, got {len(arguments)} arguments; quote the SQL statement as one argument"
        )
    name, sql = (None, arguments[0]) if len(arguments) == 1 else arguments
    result = fetch_result(sql, obj["db"], campaign=name)
    frame = result.frame

    if fmt == "table":
        cells = frame.astype(object).to_numpy(copy=True)
        cells[result.nulls] = None
        text = format_table(list(frame.columns), cells.tolist())
        text += f"\n({format_count(len(frame), 'row')})\n"
        if output is None:
            click.echo(text, nl=False)
            return
        with open(output, "w") as handle:
            handle.write(text)
    else:
        text = write_result(result, fmt, output)
        if output is None:
            click.echo(text, nl=False)
            return
    click.echo(f"Wrote {format_count(len(frame), 'row')} to {output}.", err=True)


@main.command("export")
@click.argument("name")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@click.pass_obj
def export_command(obj, name, path, force):
    """Write campaign NAME with all its data to a self-contained SQLite bundle FILE."""
    data = api.open_campaign(name, obj["db"]).export(path, overwrite=force)
    nouns = {"points": "point", "model_versions": "model version", "chains": "chain"}
    counts = ", ".join(format_count(data.count(table), noun) for table, noun in nouns.items())
    click.echo(f"Exported campaign {name!r} to {path}: {counts}.")


@main.command("import")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--into", metavar="NAME",
              help="Campaign to create or merge into. Default: the campaign name stored in the bundle.")
@click.pass_obj
def import_command(obj, path, into):
    """Load a bundle FILE into the database in one transaction.

    Importing into an existing campaign merges: points that are already
    there (same parameter values and likelihood version) are not duplicated.
    """
    summary = api.import_bundle(path, obj["db"], into=into)
    action = "Created" if summary.created else "Merged into"
    click.echo(f"{action} campaign {summary.campaign!r}.")
    click.echo(format_table(
        ["table", "added", "already present"],
        [[t, summary.added[t], summary.matched.get(t, 0)] for t in summary.added],
    ))


@main.command()
@click.argument("name")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, writable=True),
              help="HTML file to write; the plots are embedded, so it needs no other files.")
@click.pass_obj
def report(obj, name, output):
    """Write an HTML report of campaign NAME: definition, progress, models, SHAP, posterior, profiles, validation."""
    path = api.open_campaign(name, obj["db"]).report(output)
    click.echo(f"Wrote the report of campaign {name!r} to {path}.")
