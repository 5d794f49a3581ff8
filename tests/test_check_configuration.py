"""`wombat-collect check`, the configuration lines (wombat_collect/ops/check/configuration.py): the settings,
the env file, the lock and state directories; an invalid configuration skips what depends on it."""

from pathlib import Path

from tests.check_support import check, states

pytest_plugins = ("tests.check_fixtures",)


def test_check_invalid_configuration_skips_what_depends_on_it(env, env_file):
    code, found, _ = check(dict(env, WOMBAT_WORKERS="many"), "--exchange", "upbit", env_file=env_file)
    assert code == 2
    assert found["configuration"] == ("CRITICAL", "WOMBAT_WORKERS must be a whole number, not 'many'; fix it in "
                                                  "the environment or the env file")
    for name in ("database", "connection", "migrations", "schema", "backend", "privileges", "upbit", "upbit clock",
                 "lock directory", "state directory"):
        assert found[name] == ("WARNING", "skipped: the configuration is invalid")
    assert states(found)["time zone"] == states(found)["env file"] == "OK"


def test_check_world_readable_env_file_warns(migrated, env_file):
    env_file.chmod(0o644)
    code, found, _ = check(migrated, "--exchange", "upbit", env_file=env_file)
    assert code == 1
    assert found["env file"] == ("WARNING", f"{env_file} has mode 0644: every user may read its secrets; chmod 600 "
                                            f"{env_file} (640 with a group, as for cron)")


def test_check_open_state_directory_warns(migrated, env_file):
    Path(migrated["WOMBAT_STATE_DIR"]).chmod(0o755)
    code, found, _ = check(migrated, "--exchange", "upbit", env_file=env_file)
    assert code == 1
    state_dir = migrated["WOMBAT_STATE_DIR"]
    assert found["state directory"] == ("WARNING", f"{state_dir} has mode 0755, not 0700 (it holds the KIS token "
                                                   f"cache); chmod 700 {state_dir}")


def test_check_missing_lock_directory_is_critical(migrated, env_file, tmp_path):
    missing = tmp_path / "no-such-dir"
    code, found, _ = check(dict(migrated, WOMBAT_LOCK_DIR=str(missing)), "--exchange", "upbit", env_file=env_file)
    assert code == 2
    assert found["lock directory"] == ("CRITICAL", f"lock directory {missing} does not exist (set WOMBAT_LOCK_DIR)")
    assert not missing.exists()
