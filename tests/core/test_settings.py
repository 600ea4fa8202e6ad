"""Settings come from defaults, a TOML file, the environment and overrides, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tresen.core.settings import load_settings


def test_defaults_put_sqlite_in_the_data_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRESEN_CONFIG", raising=False)
    settings = load_settings()
    assert settings.port == 8470
    assert settings.limits.envelope_ttl_s == 30 * 24 * 3600
    assert settings.limits.max_one_time_keys == 50
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.resolved_database_url.endswith("tresen-data/relay.db")


def test_file_then_environment_then_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "tresen.toml"
    config.write_text(
        'port = 9000\nlog_format = "json"\nhost = "0.0.0.0"\n\n'
        "[limits]\nmax_queue_per_device = 123\nsend_rate_per_device = 5.0\n"
    )
    monkeypatch.setenv("TRESEN_PORT", "9100")
    monkeypatch.setenv("TRESEN_LIMITS__SEND_RATE_PER_DEVICE", "7.5")
    settings = load_settings(config, host="127.0.0.2")
    assert settings.port == 9100  # environment beats the file
    assert settings.host == "127.0.0.2"  # an explicit option beats both
    assert settings.log_format == "json"  # from the file
    assert settings.limits.max_queue_per_device == 123
    assert settings.limits.send_rate_per_device == 7.5


def test_config_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "relay.toml"
    config.write_text('database_url = "postgresql+asyncpg://tresen@db/tresen"\n')
    monkeypatch.setenv("TRESEN_CONFIG", str(config))
    assert load_settings().resolved_database_url == "postgresql+asyncpg://tresen@db/tresen"


def test_unknown_and_invalid_settings_are_errors(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("prot = 80\n")
    with pytest.raises(ValidationError, match="prot"):
        load_settings(config)
    config.write_text("[limits]\nmax_one_time_keys = 51\n")
    with pytest.raises(ValidationError, match="max_one_time_keys"):
        load_settings(config)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")
