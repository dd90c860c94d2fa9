from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from recsys.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    config_of_run,
    load_config,
    render_defaults,
)

RECSYS = [sys.executable, "-c", "from recsys.cli import main; main()"]


def test_default_file_loads_and_equals_the_model_defaults() -> None:
    assert load_config(DEFAULT_CONFIG_PATH, environ={}) == Config()


def test_default_file_documents_every_key() -> None:
    # configs/default.yaml is generated from the model; regenerate with `recsys config defaults`.
    assert DEFAULT_CONFIG_PATH.read_text() == render_defaults()

    def undocumented(model: type[BaseModel], path: str) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(path + name)
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                missing += undocumented(field.annotation, f"{path}{name}.")
        return missing

    assert undocumented(Config, "") == []


def test_config_defaults_prints_the_defaults_file_as_it_is() -> None:
    """Piped to a file, the command's output is the file: no console wrapping at 80 columns, and
    ``[semantic, cold_text, ...]`` is YAML, not console markup."""
    printed = subprocess.run([*RECSYS, "config", "defaults"], capture_output=True, text=True, check=True)
    assert printed.stdout == render_defaults()
    shown = subprocess.run(
        [*RECSYS, "config", "show"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "RECSYS_RETRIEVAL__SOURCES": "[semantic, covisit]"},
    )
    assert yaml.safe_load(shown.stdout)["retrieval"]["sources"] == ["semantic", "covisit"]


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("encoder:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'encoder.epochz'"):
        load_config(path, environ={})


def test_bad_value_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("split:\n  test_share: 2\n")
    with pytest.raises(ConfigError, match=r"key 'split.test_share'"):
        load_config(path, environ={})


def test_env_overrides_are_typed_and_nested(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("encoder:\n  epochs: 1\n")
    env = {
        "RECSYS_ENCODER__EPOCHS": "2",
        "RECSYS_FEATURES__ONLINE__BACKEND": "redis",
        "RECSYS_API_TOKEN": "not-config",  # single-level names are settings of other parts
    }
    config = load_config(path, environ=env)
    assert config.encoder.epochs == 2.0
    assert config.features.online.backend == "redis"
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        load_config(path, environ={"RECSYS_NOPE__X": "1"})


def test_run_config_drops_keys_an_older_recsys_had_and_validates_the_rest() -> None:
    recorded = Config().model_dump(mode="json")
    recorded["ranking"]["valid_user_share"] = 0.2  # a key removed since that run was written
    recorded["retired_section"] = {"x": 1}
    config = config_of_run(recorded)
    assert config == Config()
    recorded["ranking"]["num_leaves"] = "many"
    with pytest.raises(ValidationError, match="num_leaves"):
        config_of_run(recorded)


def test_cold_share_floor_above_its_cap_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("ranking:\n  cold_share_min: 0.3\n  cold_share_max: 0.2\n")
    with pytest.raises(ConfigError, match=r"cold_share_min \(0.3\) exceeds cold_share_max \(0.2\)"):
        load_config(path, environ={})


def test_the_encoder_budget_follows_the_device() -> None:
    config = Config().encoder
    cpu, gpu = config.for_device("cpu"), config.for_device("cuda")
    assert cpu == config  # CPUs keep the section's own, CPU-sized budget
    assert (gpu.max_pairs, gpu.batch_size, gpu.max_seq_length, gpu.max_steps) == (
        config.gpu.max_pairs,
        config.gpu.batch_size,
        config.gpu.max_seq_length,
        config.gpu.max_steps,
    )
    assert gpu.max_pairs > 10 * cpu.max_pairs and gpu.max_seq_length > cpu.max_seq_length
    refresh = config.refreshing("runs/x/encoder/evaluated/model")
    assert refresh.base_model == "runs/x/encoder/evaluated/model"
    assert refresh.for_device("cpu").max_steps == config.refresh_steps
    assert refresh.for_device("cuda").max_steps == config.gpu.refresh_steps
