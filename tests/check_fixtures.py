"""The fixtures of the `wombat-collect check` tests, loaded by each tests/test_check_*.py with
`pytest_plugins` (never imported): a healthy setup of a real PostgreSQL, the fake exchanges on loopback,
a 0700 state directory and a stand-in `systemctl` on PATH reporting every timer enabled."""

import os

import pytest

from tests.check_support import fake_systemctl, with_password
from tests.conftest import run_cli
from tests.fakes.kis_server import FakeKis, build_master_zip


@pytest.fixture
def fake_bin(tmp_path):
    """A directory first on PATH holding a `systemctl` that reports every timer enabled."""
    directory = tmp_path / "bin"
    directory.mkdir()
    fake_systemctl(directory)
    return directory


@pytest.fixture
def fake_kis():
    """A FakeKis serving the KONEX master file (the one `check` asks for)."""
    with FakeKis() as server:
        server.set_master("konex", build_master_zip("konex", []))
        yield server


@pytest.fixture
def env_file(tmp_path, fake_kis):
    """An env file of mode 0600 holding the KIS secret."""
    path = tmp_path / "wombat.env"
    path.write_text(f"KIS_APP_SECRET={fake_kis.app_secret}\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def env(database, fake_upbit, fake_kis, fake_bin, tmp_path):
    """The environment of a healthy setup: a database, both fakes, a 0700 state directory, timers enabled."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return {"DATABASE_URL": with_password(database), "UPBIT_API_URL": fake_upbit.url, "UPBIT_RATE_LIMIT": "1000",
            "KIS_API_URL": fake_kis.url, "KIS_MASTER_URL": fake_kis.master_url, "KIS_APP_KEY": fake_kis.app_key,
            "WOMBAT_STATE_DIR": str(state), "WOMBAT_HTTP_TIMEOUT": "5", "KIS_TOKEN_RETRY_WAIT": "0.2",
            "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "TZDIR": None, "POSTGRES_SERVER": None}


@pytest.fixture
def migrated(env):
    """The healthy environment after `db init`."""
    assert run_cli("db", "init", env=env).exit_code == 0
    return env
