"""Settings: environment over TOML over defaults, `_FILE` secrets, masking, clear errors."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("JIT_BRIDGE_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_follow_the_spec() -> None:
    s = load_settings()
    assert s.mode == "jit"
    assert s.manage_teams == "all"
    assert s.role_precedence == ("TEAM_ADMIN", "EDITOR", "VIEWER")
    assert s.max_removals == 25
    assert s.max_removal_fraction == 0.10
    assert s.reconcile_interval == 900
    assert s.database_url == "sqlite:///jit-bridge.db"
    assert s.listen == "127.0.0.1:8080"
    assert s.verify_tls is True
    assert s.poll_events is False
    assert s.poll_interval == 5


def test_toml_file_sets_policy(tmp_path: Path) -> None:
    path = write(tmp_path, 'mode = "enhanced"\nprotected_users = ["Root@Example.com"]\n')
    s = load_settings(path)
    assert s.mode == "enhanced"
    assert s.policy.is_protected("root@example.com")


def test_environment_wins_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'mode = "enhanced"\nmax_removals = 3\n')
    monkeypatch.setenv("JIT_BRIDGE_MODE", "jit")
    s = load_settings(path)
    assert s.mode == "jit"
    assert s.max_removals == 3


def test_list_settings_from_env_accept_commas_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIT_BRIDGE_PROTECTED_USERS", "a@x.com, B@x.com")
    monkeypatch.setenv("JIT_BRIDGE_ROLE_PRECEDENCE", '["team_admin", "viewer"]')
    s = load_settings()
    assert s.protected_users == {"a@x.com", "b@x.com"}
    assert s.role_precedence == ("TEAM_ADMIN", "VIEWER")


def test_secret_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "key"
    secret.write_text("s3cr3t-from-file\n", encoding="utf-8")
    monkeypatch.setenv("JIT_BRIDGE_TINES_API_KEY_FILE", str(secret))
    assert load_settings().secret("tines_api_key") == "s3cr3t-from-file"


def test_unreadable_secret_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIT_BRIDGE_ADMIN_TOKEN_FILE", "/nonexistent/token")
    with pytest.raises(SettingsError, match="JIT_BRIDGE_ADMIN_TOKEN_FILE"):
        load_settings()


def test_toml_names_secret_files_relative_to_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tines_api_key").write_text("key-from-toml-file\n", encoding="utf-8")
    path = write(tmp_path, 'tines_api_key_file = "tines_api_key"\nadmin_token_file = "gone"\n')
    monkeypatch.chdir("/")
    with pytest.raises(SettingsError, match=r"'admin_token_file': cannot read .*gone"):
        load_settings(path)
    monkeypatch.setenv("JIT_BRIDGE_ADMIN_TOKEN", "from-env")
    s = load_settings(path)
    assert s.secret("tines_api_key") == "key-from-toml-file"
    assert s.secret("admin_token") == "from-env"
    both = write(tmp_path, 'scim_token = "x"\nscim_token_file = "tines_api_key"\n')
    with pytest.raises(SettingsError, match="not both"):
        load_settings(both)


def test_bad_values_name_every_setting(tmp_path: Path) -> None:
    path = write(tmp_path, 'mode = "turbo"\nmax_removals = -1\nmax_removels = 3\n')
    with pytest.raises(SettingsError) as err:
        load_settings(path)
    text = str(err.value)
    assert "'mode'" in text
    assert "'max_removals'" in text
    assert "'max_removels'" in text
    assert "unknown setting" in text


def test_broken_toml_says_where(tmp_path: Path) -> None:
    path = write(tmp_path, "mode = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(path)


def test_config_masks_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JIT_BRIDGE_TINES_API_KEY", "tines-key-value")
    monkeypatch.setenv("JIT_BRIDGE_WEBHOOK_SECRET", "hook-secret-value")
    monkeypatch.setenv("JIT_BRIDGE_DATABASE_URL", "postgresql://bridge:pg-pass-value@db/bridge")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert shown["tines_api_key"] == "**********"
    assert shown["database_url"] == "postgresql://bridge:**********@db/bridge"
    for secret in ("tines-key-value", "hook-secret-value", "pg-pass-value"):
        assert secret not in out


def test_bad_settings_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JIT_BRIDGE_LISTEN", "nonsense")
    assert main(["config"]) == 2
    assert "listen" in capsys.readouterr().err


@pytest.mark.parametrize("before", [True, False])
def test_settings_flag_works_before_or_after_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], before: bool
) -> None:
    path = write(tmp_path, 'mode = "enhanced"\n')
    args = ["--settings", str(path), "config"] if before else ["config", "--settings", str(path)]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "enhanced"


def test_a_setting_given_both_as_variable_and_as_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image or unit that sets JIT_BRIDGE_DATABASE_URL must not silently win over the
    orchestrator's JIT_BRIDGE_DATABASE_URL_FILE (a PostgreSQL deployment on a local SQLite)."""
    url_file = tmp_path / "db"
    url_file.write_text("postgresql://bridge:pw@db/bridge\n", encoding="utf-8")
    monkeypatch.setenv("JIT_BRIDGE_DATABASE_URL_FILE", str(url_file))
    monkeypatch.setenv("JIT_BRIDGE_DATABASE_URL", "sqlite:////var/lib/jit-bridge/jit-bridge.db")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value).startswith(
        "JIT_BRIDGE_DATABASE_URL and JIT_BRIDGE_DATABASE_URL_FILE are both set"
    )


def test_database_url_from_file_is_masked_in_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url_file = tmp_path / "db"
    url_file.write_text("postgresql://bridge:file-pass-value@db/bridge\n", encoding="utf-8")
    monkeypatch.setenv("JIT_BRIDGE_DATABASE_URL_FILE", str(url_file))
    assert load_settings().database_url == "postgresql://bridge:file-pass-value@db/bridge"
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "file-pass-value" not in out
    assert json.loads(out)["database_url"] == "postgresql://bridge:**********@db/bridge"


def test_previous_webhook_secret_is_read_from_a_file_and_masked_in_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "webhook_secret").write_text("hook-new-value\n", encoding="utf-8")
    (tmp_path / "webhook_secret_previous").write_text("hook-old-value\n", encoding="utf-8")
    monkeypatch.setenv("JIT_BRIDGE_WEBHOOK_SECRET_FILE", str(tmp_path / "webhook_secret"))
    monkeypatch.setenv(
        "JIT_BRIDGE_WEBHOOK_SECRET_PREVIOUS_FILE", str(tmp_path / "webhook_secret_previous")
    )
    assert load_settings().secret("webhook_secret_previous") == "hook-old-value"
    assert main(["config"]) == 0
    captured = capsys.readouterr()
    shown = json.loads(captured.out)
    assert shown["webhook_secret"] == shown["webhook_secret_previous"] == "**********"
    assert "hook-old-value" not in captured.out + captured.err
    assert "hook-new-value" not in captured.out + captured.err


def test_previous_webhook_secret_file_named_in_toml(tmp_path: Path) -> None:
    (tmp_path / "old").write_text("hook-old-value\n", encoding="utf-8")
    path = write(
        tmp_path, 'webhook_secret = "hook-new-value"\nwebhook_secret_previous_file = "old"\n'
    )
    settings = load_settings(path)
    assert settings.secret("webhook_secret") == "hook-new-value"
    assert settings.secret("webhook_secret_previous") == "hook-old-value"


def test_an_empty_previous_webhook_secret_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIT_BRIDGE_WEBHOOK_SECRET_PREVIOUS", "")
    assert not load_settings().secret("webhook_secret_previous")


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({"JIT_BRIDGE_WEBHOOK_SECRET_PREVIOUS": "hook-old-value"}, "set without 'webhook_secret'"),
        (
            {
                "JIT_BRIDGE_WEBHOOK_SECRET": "hook-old-value",
                "JIT_BRIDGE_WEBHOOK_SECRET_PREVIOUS": "hook-old-value",
            },
            "equal to 'webhook_secret'",
        ),
    ],
    ids=["without-the-new-secret", "equal-to-the-new-secret"],
)
def test_a_previous_webhook_secret_that_cannot_be_a_rotation_stops_the_start(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, str],
    problem: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert main(["run"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(
        "jit-bridge: setting 'webhook_secret_previous' "
        "(JIT_BRIDGE_WEBHOOK_SECRET_PREVIOUS(_FILE)): "
    )
    assert problem in lines[0]
    assert "hook-old-value" not in captured.out + captured.err


def test_run_names_a_guessable_admin_token_or_webhook_secret_and_never_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Wrong admin tokens and webhook signatures are refused, not rate-limited: a short one
    is named in the log when the service starts (here it then stops on a missing mapping),
    and only then; one made as `jit-bridge init` makes it is not named."""
    monkeypatch.setenv("JIT_BRIDGE_ADMIN_TOKEN", "letmein")
    monkeypatch.setenv("JIT_BRIDGE_WEBHOOK_SECRET", secrets.token_urlsafe(32))
    monkeypatch.setenv("JIT_BRIDGE_MAPPING_FILE", str(tmp_path / "missing.json"))

    assert main(["run"]) == 2
    out = capsys.readouterr()
    named = [line for line in out.err.splitlines() if "characters long" in line]
    assert len(named) == 1, out.err
    assert "admin_token is only 7 characters long" in named[0]
    assert "letmein" not in out.out + out.err

    main(["config"])
    assert "characters long" not in capsys.readouterr().err
