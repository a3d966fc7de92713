"""The ``speedmap`` command line."""

from __future__ import annotations

import typer

from speedmap import __version__
from speedmap.cli.bench import bench_command
from speedmap.cli.compare import compare_command
from speedmap.cli.datasets import app as datasets_app
from speedmap.cli.evaluate import eval_command
from speedmap.cli.export import export_command, models_list_command
from speedmap.cli.predict import predict_command
from speedmap.cli.serve import serve_command
from speedmap.cli.train import train_command

app = typer.Typer(
    name="speedmap",
    help="Fast or Accurate? Train detectors in two sizes and measure accuracy, speed and training time.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(datasets_app, name="datasets")
app.command("eval")(eval_command)
app.command("train")(train_command)
app.command("export")(export_command)
app.command("predict")(predict_command)
app.command("serve")(serve_command)
app.command("bench")(bench_command)
app.command("compare")(compare_command)
models_app = typer.Typer(help="The model store: exported models by project/version id.", no_args_is_help=True)
models_app.command("list")(models_list_command)
app.add_typer(models_app, name="models")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"speedmap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """speedmap command line."""


def main() -> None:
    app()
