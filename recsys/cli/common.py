"""What every subcommand shares: the loaded config and a uniform way to fail."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import typer

from recsys.config import Config, ConfigError, load_config
from recsys.console import console


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
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)
