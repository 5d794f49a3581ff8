"""Settings from the environment and .env files."""

import logging
import os
import pwd
from pathlib import Path

import pytest

from tests.conftest import run_cli
from wombat_collect.config import (
    DEFAULT_KIS_REAL_URL,
    DEFAULT_KIS_VIRTUAL_URL,
    database_url,
    load_settings,
    mask_dsn,
    read_environment,
)
from wombat_collect.errors import ConfigError


def test_read_environment_real_environment_wins_over_file(tmp_path):
    env_file = tmp_path / "wombat.env"
    env_file.write_text("UPBIT_RATE_LIMIT=5\nWOMBAT_WORKERS=3\n")
    merged = read_environment(str(env_file), environ={"UPBIT_RATE_LIMIT": "7"})
    assert merged["UPBIT_RATE_LIMIT"] == "7"
    assert merged["WOMBAT_WORKERS"] == "3"


def test_read_environment_uses_wombat_env_file(tmp_path):
    env_file = tmp_path / "other.env"
    env_file.write_text("WOMBAT_WORKERS=4\n")
    assert read_environment(None, environ={"WOMBAT_ENV_FILE": str(env_file)})["WOMBAT_WORKERS"] == "4"


def test_read_environment_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read env file .*missing.env: No such file or directory"):
        read_environment(str(tmp_path / "missing.env"), environ={})


def test_database_url_prefers_database_url():
    variables = {"DATABASE_URL": "postgresql://a@h1/db1", "POSTGRES_SERVER": "h2"}
    assert database_url(variables) == "postgresql://a@h1/db1"


def test_database_url_builds_from_postgres_variables():
    dsn = database_url({"POSTGRES_SERVER": "db.internal", "POSTGRES_DB": "wombat", "POSTGRES_USER": "w",
                        "POSTGRES_PASSWORD": "s3cret pw"})
    assert dsn == "host=db.internal port=5432 dbname=wombat user=w password='s3cret pw'"


def test_database_url_none_means_embedded():
    assert database_url({"DATABASE_URL": "  "}) is None


@pytest.mark.parametrize("variables, message", [
    ({"POSTGRES_SERVER": "h", "POSTGRES_PORT": "54x"}, "POSTGRES_PORT must be a whole number, not '54x'"),
    ({"POSTGRES_SERVER": "h", "POSTGRES_PORT": "70000"}, "POSTGRES_PORT must be between 1 and 65535, not 70000"),
    ({"DATABASE_URL": "postgresql://u:pw@[::1/x"}, "DATABASE_URL is not a valid libpq connection URI"),
])
def test_database_url_bad_values_name_the_variable(variables, message):
    with pytest.raises(ConfigError) as raised:
        database_url(variables)
    assert str(raised.value) == message
    assert "pw" not in str(raised.value)


AT_IN_HOST = "DATABASE_URL has an '@' in its host part: percent-encode an '@' in the user name or password as %40"


@pytest.mark.parametrize("url", ["postgresql://u:p@ss@host/db", "postgresql://wombat:Pa55@w0rd-tail@db.example:5432/w",
                                 "postgres://u:p@ss@h1:5432,h2:5433/db"])
def test_database_url_rejects_an_unencoded_at_in_the_password(url):
    with pytest.raises(ConfigError) as raised:
        database_url({"DATABASE_URL": url})
    assert str(raised.value) == AT_IN_HOST
    assert database_url({"DATABASE_URL": url.replace("@", "%40", 1)})  # encoded, it is fine


def test_prices_unencoded_at_in_database_url_exits_2_with_one_line():
    result = run_cli("prices", "--exchange", "upbit", env={"DATABASE_URL": "postgresql://u:p@ss@host/db"})
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.strip().endswith(AT_IN_HOST)
    assert "ss@host" not in result.output and "p@ss" not in result.output and result.stdout == ""


def test_mask_dsn_hides_the_password():
    assert mask_dsn("postgresql://wombat:hunter2@db.internal:6432/market") == "wombat@db.internal:6432/market"
    assert "hunter2" not in mask_dsn("host=x password=hunter2 dbname=y")


def test_load_settings_kis_env_virtual_changes_defaults():
    settings = load_settings({"KIS_ENV": "virtual"})
    assert (settings.kis_api_url, settings.kis_rate_limit) == (DEFAULT_KIS_VIRTUAL_URL, 1.0)
    settings = load_settings({})
    assert (settings.kis_api_url, settings.kis_rate_limit) == (DEFAULT_KIS_REAL_URL, 18.0)


def test_load_settings_repr_hides_secrets():
    settings = load_settings({"KIS_APP_KEY": "PSkey123", "KIS_APP_SECRET": "topsecret",
                              "DATABASE_URL": "postgresql://u:pw123@h/d"})
    assert "PSkey123" not in repr(settings) and "topsecret" not in repr(settings) and "pw123" not in repr(settings)


@pytest.mark.parametrize("name, value", [("KIS_ADJUSTED", "maybe"), ("KIS_ENV", "paper"),
                                         ("WOMBAT_BACKFILL_DAYS", "-1"), ("WOMBAT_HTTP_TIMEOUT", "abc")])
def test_load_settings_rejects_bad_values(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_load_settings_state_dir_follows_systemd():
    settings = load_settings({"STATE_DIRECTORY": "/var/lib/wombat-collect:/var/lib/other"})
    assert settings.state_dir == Path("/var/lib/wombat-collect")


def test_read_environment_empty_variable_does_not_hide_the_file(tmp_path):
    env_file = tmp_path / "wombat.env"
    env_file.write_text("DATABASE_URL=postgresql://u@db.internal/wombat\n")
    merged = read_environment(str(env_file), environ={"DATABASE_URL": ""})
    assert merged["DATABASE_URL"] == "postgresql://u@db.internal/wombat"


@pytest.mark.parametrize(("variables", "lock", "statement"), [
    ({}, 60.0, 300.0),
    ({"WOMBAT_LOCK_TIMEOUT": "0", "WOMBAT_STATEMENT_TIMEOUT": "0"}, None, None),
    ({"WOMBAT_LOCK_TIMEOUT": "2.5", "WOMBAT_STATEMENT_TIMEOUT": "30"}, 2.5, 30.0),
    ({"DATABASE_URL": "postgresql://h/d?options=-c%20lock_timeout%3D5s"}, None, 300.0),
    ({"DATABASE_URL": "postgresql://h/d?options=-c%20lock_timeout%3D5s", "WOMBAT_LOCK_TIMEOUT": "7"}, 7.0, 300.0),
    ({"DATABASE_URL": "host=h options='-cstatement_timeout=9s --lock-timeout=1s'"}, None, None),
    ({"DATABASE_URL": "postgresql://h/d?options=-c%20search_path%3Dwombat"}, 60.0, 300.0),
])
def test_load_settings_timeouts_leave_what_the_dsn_options_set(variables, lock, statement):
    settings = load_settings(variables)
    assert (settings.lock_timeout, settings.statement_timeout) == (lock, statement)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")


def plant_env_file(directory, mode=0o600, owner=None, content="WOMBAT_WORKERS=3\n"):
    """Given a directory, write its .env with `mode` (and owner uid); return its path."""
    path = directory / ".env"
    path.write_text(content)
    path.chmod(mode)
    if owner is not None:
        os.chown(path, owner, -1)
    return path


def test_read_environment_loads_an_implicit_env_file_of_our_own(tmp_path, monkeypatch):
    plant_env_file(tmp_path, 0o644)
    monkeypatch.chdir(tmp_path)
    assert read_environment(None, environ={})["WOMBAT_WORKERS"] == "3"


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
def test_read_environment_skips_an_implicit_env_file_others_may_write(tmp_path, monkeypatch, caplog, mode):
    plant_env_file(tmp_path, mode)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert read_environment(None, environ={"WOMBAT_ENV_FILE": ""}) == {}  # empty: unset
    assert [record.getMessage() for record in caplog.records] == [
        f"ignoring env file .env: it is writable by group or others (mode {mode:04o})"]


@needs_root
def test_read_environment_skips_an_implicit_env_file_of_another_user(tmp_path, monkeypatch, caplog):
    plant_env_file(tmp_path, 0o600, owner=pwd.getpwnam("nobody").pw_uid)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert "WOMBAT_WORKERS" not in read_environment(None, environ={})
    assert [record.getMessage() for record in caplog.records] == [
        f"ignoring env file .env: it is owned by uid {pwd.getpwnam('nobody').pw_uid}, not by this user or root"]


def test_read_environment_refuses_a_named_env_file_others_may_write(tmp_path):
    path = plant_env_file(tmp_path, 0o664)
    with pytest.raises(ConfigError) as raised:
        read_environment(str(path), environ={})
    assert str(raised.value) == f"refusing env file {path}: it is writable by group or others (mode 0664)"
    assert raised.value.exit_code == 2


@needs_root
def test_read_environment_refuses_a_named_env_file_of_another_user(tmp_path):
    path = plant_env_file(tmp_path, 0o600, owner=pwd.getpwnam("nobody").pw_uid)
    with pytest.raises(ConfigError, match=f"^refusing env file {path}: it is owned by uid "):
        read_environment(None, environ={"WOMBAT_ENV_FILE": str(path)})


def test_read_environment_accepts_dev_null_as_the_env_file():
    assert read_environment("/dev/null", environ={"A": "1"}) == {"A": "1"}


def test_db_init_ignores_a_world_writable_env_file_in_the_current_directory(database, tmp_path, monkeypatch):
    plant_env_file(tmp_path, 0o666, content="WOMBAT_WORKERS=lots\n")  # would be exit 2 if it were read
    monkeypatch.chdir(tmp_path)
    result = run_cli("db", "init", env={"DATABASE_URL": database, "WOMBAT_ENV_FILE": ""})
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().endswith("ignoring env file .env: it is writable by group or others (mode 0666)")
    assert len(result.stderr.strip().splitlines()) == 1
@pytest.mark.parametrize("name", ["UPBIT_API_URL", "KIS_API_URL", "KIS_MASTER_URL"])
@pytest.mark.parametrize("value", ["http://api.upbit.com", "http://localhost.example.com:8080",
                                   "http://127.0.0.1.nip.io", "http://0.0.0.0:9443", "HTTP://10.0.0.1"])
def test_load_settings_exchange_url_must_be_https_off_loopback(name, value):
    with pytest.raises(ConfigError) as raised:
        load_settings({name: value})
    assert str(raised.value) == f"{name} must be an https URL (http only for a loopback host such as 127.0.0.1)"


@pytest.mark.parametrize("value", ["http://127.0.0.1:8080", "http://127.9.8.7", "http://[::1]:9443/common",
                                   "http://localhost:1234", "http://LOCALHOST", "https://api.upbit.com"])
def test_load_settings_exchange_url_accepts_https_and_loopback_http(value):
    settings = load_settings({"UPBIT_API_URL": value, "KIS_API_URL": value, "KIS_MASTER_URL": value})
    assert settings.upbit_api_url == settings.kis_api_url == settings.kis_master_url == value


def test_load_settings_ping_url_may_stay_http():
    assert load_settings({"WOMBAT_PING_URL": "http://hc.internal/ping/x"}).ping_url == "http://hc.internal/ping/x"


def test_load_settings_reads_the_kis_key_pair_from_files(tmp_path):
    (tmp_path / "key").write_text("  PSfromfile\n")
    (tmp_path / "secret").write_text("secretfromfile\n")
    settings = load_settings({"KIS_APP_KEY_FILE": str(tmp_path / "key"),
                              "KIS_APP_SECRET_FILE": str(tmp_path / "secret")})
    assert (settings.kis_app_key, settings.kis_app_secret) == ("PSfromfile", "secretfromfile")


@pytest.mark.parametrize("variables, message", [
    ({"KIS_APP_KEY": "PSkey", "KIS_APP_KEY_FILE": "/etc/hostname"}, "set KIS_APP_KEY or KIS_APP_KEY_FILE, not both"),
    ({"KIS_APP_SECRET_FILE": "/nonexistent/secret"},
     "KIS_APP_SECRET_FILE /nonexistent/secret: cannot read it: No such file or directory"),
    ({"KIS_APP_KEY_FILE": "/dev/null"}, "KIS_APP_KEY_FILE /dev/null is empty"),
    ({"WOMBAT_SOURCE_ADDRESS": "eth0"}, "WOMBAT_SOURCE_ADDRESS must be an IP address of this host, not 'eth0'"),
], ids=["both", "unreadable", "empty", "source-address"])
def test_load_settings_rejects_bad_key_files_and_source_addresses(variables, message):
    with pytest.raises(ConfigError) as raised:
        load_settings(variables)
    assert str(raised.value) == message


def test_prices_kis_key_file_missing_exits_2_with_one_line():
    result = run_cli("prices", "--exchange", "kis", env={"KIS_APP_KEY_FILE": "/nonexistent/key"})
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.strip().endswith(" ERROR KIS_APP_KEY_FILE /nonexistent/key: cannot read it: "
                                          "No such file or directory")
