"""`lf models ...`: the local model cache."""

from __future__ import annotations

import typer

models_app = typer.Typer(no_args_is_help=True, help="The local model cache: list, pull, rm.")
