"""What every subcommand shares: the loaded config and a uniform way to fail."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.markup import escape

from recsys.config import Config, ConfigError, load_config
from recsys.console import console

if TYPE_CHECKING:
    from recsys.data import Dataset


@dataclass
class State:
    config_path: Path | None = None
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
            except ConfigError as error:
                fail(str(error))
        return self._config


def state(ctx: typer.Context) -> State:
    assert isinstance(ctx.obj, State)
    return ctx.obj


def fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def load_data(ctx: typer.Context, folder: Path) -> Dataset:
    """The validated dataset in ``folder`` (the config's validation settings), or a clean exit
    with the message naming the file, row and field."""
    from recsys.data import DataValidationError, load_dataset
    from recsys.data.readers import DataFileError

    config = state(ctx).config
    try:
        return load_dataset(folder, max_bad_share=config.data.max_bad_share, as_of=config.data.as_of)
    except (DataValidationError, DataFileError) as error:
        fail(str(error))
