"""`lf examples ...`: bundled example projects."""

from __future__ import annotations

import typer

examples_app = typer.Typer(no_args_is_help=True, help="Bundled example projects: list, import.")
