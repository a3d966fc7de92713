"""The ``speedmap`` command line."""

from __future__ import annotations

import typer

from speedmap import __version__
from speedmap.cli.bench import bench_command
from speedmap.cli.common import Command, Group
from speedmap.cli.compare import compare_command
from speedmap.cli.datasets import app as datasets_app
from speedmap.cli.evaluate import eval_command
from speedmap.cli.export import export_command, models_list_command
from speedmap.cli.predict import predict_command
from speedmap.cli.pretrain import pretrain_command
from speedmap.cli.serve import serve_command
from speedmap.cli.train import train_command

# The order a user meets the commands in: the whole study first, then its steps one by one, then the model store.
WORKFLOW = ("compare", "datasets", "train", "pretrain", "export", "predict", "eval", "serve", "bench", "models")


class WorkflowGroup(Group):
    """``speedmap --help`` lists the commands in :data:`WORKFLOW` order (Typer puts commands before groups)."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: WORKFLOW.index(n) if n in WORKFLOW else len(WORKFLOW))


app = typer.Typer(
    name="speedmap",
    help="Fast or Accurate? Train detectors in two sizes and measure accuracy, speed and training time.",
    cls=WorkflowGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("compare", cls=Command)(compare_command)
app.add_typer(datasets_app, name="datasets")
app.command("train", cls=Command)(train_command)
app.command("pretrain", cls=Command)(pretrain_command)
app.command("export", cls=Command)(export_command)
app.command("predict", cls=Command)(predict_command)
app.command("eval", cls=Command)(eval_command)
app.command("serve", cls=Command)(serve_command)
app.command("bench", cls=Command)(bench_command)
models_app = typer.Typer(
    help="The model store: exported models by project/version id.", cls=Group, no_args_is_help=True
)
models_app.command("list", cls=Command)(models_list_command)
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
