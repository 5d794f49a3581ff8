"""Job locks: lock files on one host, advisory locks across hosts, waiting."""

import fcntl
import logging
import os
import pwd
import signal
import stat
import threading

import psycopg2
import pytest

from tests.conftest import query, run_cli, upbit_env
from tests.ops_support import (
    DAYS_BACK,
    HELD,
    SLOW,
    has_open,
    holds_candles,
    running_count,
    slow_markets,
    spawn,
    stored_count,
    table_exists,
    wait_until,
)
from wombat_collect.errors import ConfigError, LockBusy
from wombat_collect.ops import locks

WORKER_ARGUMENTS = ("prices", "--exchange", "upbit", "--since", "2025-01-01", "--worker")


def hold(lock_dir, job, exchange, operation=fcntl.LOCK_EX):
    """Given a job and exchange, lock its file from this test process; return the descriptor."""
    descriptor = os.open(locks.lock_path(lock_dir, job, exchange), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(descriptor, operation)
    os.pwrite(descriptor, b"4242\n", 0)
    return descriptor


def test_take_file_lock_writes_the_pid_and_refuses_a_second_holder(tmp_path):
    descriptor = locks.take_file_lock(tmp_path, "prices", "upbit")
    try:
        assert (tmp_path / "wombat-collect-prices-upbit.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(LockBusy) as raised:
            locks.take_file_lock(tmp_path, "prices", "upbit")
        assert str(raised.value) == (f"prices upbit is already running (pid {os.getpid()}, "
                                     f"lock {tmp_path}/wombat-collect-prices-upbit.lock)")
        assert raised.value.exit_code == 75
    finally:
        os.close(descriptor)
    os.close(locks.take_file_lock(tmp_path, "prices", "upbit"))  # free again once closed


def test_take_file_lock_wait_gets_the_lock_once_freed(tmp_path):
    descriptor = hold(tmp_path, "prices", "upbit")
    freeing = threading.Event()

    def free():
        freeing.set()  # before the close: the waiter cannot get the lock before this is set
        os.close(descriptor)

    threading.Timer(0.5, free).start()
    os.close(locks.take_file_lock(tmp_path, "prices", "upbit", wait_seconds=60))
    assert freeing.is_set()  # it waited for the holder, however long the machine took


def test_file_locks_symbols_all_locks_each_exchange(tmp_path):
    with locks.file_locks(tmp_path, "symbols", ["upbit", "kis"]):
        for exchange in ("upbit", "kis"):
            assert (tmp_path / f"wombat-collect-symbols-{exchange}.lock").read_text() == f"{os.getpid()}\n"
            with pytest.raises(LockBusy):
                locks.take_file_lock(tmp_path, "symbols", exchange)
    os.close(locks.take_file_lock(tmp_path, "symbols", "kis"))


@pytest.mark.parametrize("make, message", [
    (lambda path: path / "missing", "does not exist"),
    (lambda path: path / "file" if (path / "file").write_text("x") else None, "is not a directory"),
])
def test_check_lock_dir_unusable_raises_config_error(tmp_path, make, message):
    with pytest.raises(ConfigError) as raised:
        locks.check_lock_dir(make(tmp_path))
    assert message in str(raised.value) and raised.value.exit_code == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_check_lock_dir_read_only_raises_config_error(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="is not writable"):
            locks.check_lock_dir(tmp_path)
    finally:
        tmp_path.chmod(0o700)


def shared_directory(parent, mode=0o1777):
    """Given a parent directory, return a new subdirectory with `mode` (default: like /run/lock)."""
    directory = parent / "shared"
    directory.mkdir()
    directory.chmod(mode)
    return directory


def our_subdirectory(shared):
    return shared / f"wombat-collect-{os.geteuid()}"


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")


def nobody():
    return pwd.getpwnam("nobody").pw_uid


def test_check_lock_dir_private_directory_is_used_as_is(tmp_path):
    assert locks.check_lock_dir(tmp_path) == tmp_path
    assert os.listdir(tmp_path) == []


def test_check_lock_dir_shared_sticky_directory_gets_a_private_subdirectory(tmp_path):
    shared = shared_directory(tmp_path)
    private = locks.check_lock_dir(shared)
    assert private == our_subdirectory(shared)
    status = os.lstat(private)
    assert (stat.S_ISDIR(status.st_mode), stat.S_IMODE(status.st_mode), status.st_uid) == (True, 0o700, os.geteuid())
    assert locks.check_lock_dir(shared) == private  # the second run reuses it


@pytest.mark.parametrize("plant, message", [
    (lambda path, target: path.symlink_to(target), "is a symlink"),
    (lambda path, target: path.write_text("x"), "is not a directory"),
    (lambda path, target: (path.mkdir(), path.chmod(0o777)), "has mode 0777, not 0700"),
    (lambda path, target: (path.mkdir(), path.chmod(0o750)), "has mode 0750, not 0700"),
], ids=["symlink", "file", "mode-0777", "mode-0750"])
def test_check_lock_dir_planted_subdirectory_raises_config_error(tmp_path, plant, message):
    shared = shared_directory(tmp_path)
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    plant(our_subdirectory(shared), target)
    with pytest.raises(ConfigError) as raised:
        locks.check_lock_dir(shared)
    assert str(raised.value) == (f"lock directory {our_subdirectory(shared)} {message}; remove it or set "
                                 "WOMBAT_LOCK_DIR to a directory only this user can write")
    assert raised.value.exit_code == 2
    assert os.listdir(target) == []


@needs_root
def test_check_lock_dir_subdirectory_of_another_user_raises_config_error(tmp_path):
    shared = shared_directory(tmp_path)
    our_subdirectory(shared).mkdir(mode=0o700)
    os.chown(our_subdirectory(shared), nobody(), -1)
    with pytest.raises(ConfigError) as raised:
        locks.check_lock_dir(shared)
    assert str(raised.value) == (f"lock directory {our_subdirectory(shared)} belongs to uid {nobody()}, not to this "
                                 f"user (uid 0); remove it or set WOMBAT_LOCK_DIR to a directory only this user can "
                                 "write")


@needs_root
def test_check_lock_dir_owned_by_another_user_raises_config_error(tmp_path):
    os.chown(tmp_path, nobody(), -1)
    with pytest.raises(ConfigError) as raised:
        locks.check_lock_dir(tmp_path)
    assert str(raised.value) == (f"lock directory {tmp_path} is owned by uid {nobody()}, not by this user or root; "
                                 "set WOMBAT_LOCK_DIR to a directory only this user can write")


@pytest.mark.parametrize("mode", [0o777, 0o770])
def test_check_lock_dir_writable_by_others_without_sticky_bit_raises_config_error(tmp_path, mode):
    shared = shared_directory(tmp_path, mode)
    with pytest.raises(ConfigError) as raised:
        locks.check_lock_dir(shared)
    assert str(raised.value) == (f"lock directory {shared} is writable by others (mode {mode:04o}) and not sticky; "
                                 "set WOMBAT_LOCK_DIR to a directory only this user can write")
    assert os.listdir(shared) == []


def test_take_file_lock_leaves_a_hard_linked_file_untouched(tmp_path, caplog):
    victim = tmp_path / "precious.txt"
    victim.write_text("precious content\n")
    os.link(victim, locks.lock_path(tmp_path, "prices", "upbit"))
    with caplog.at_level(logging.WARNING):
        descriptor = locks.take_file_lock(tmp_path, "prices", "upbit")
    os.close(descriptor)
    assert victim.read_text() == "precious content\n"
    assert [record.getMessage() for record in caplog.records] == [
        f"lock file {tmp_path}/wombat-collect-prices-upbit.lock has 2 links: its content is left as it is "
        "(remove it)"]


@needs_root
def test_take_file_lock_leaves_another_users_file_untouched(tmp_path):
    path = locks.lock_path(tmp_path, "prices", "upbit")
    path.write_text("other\n")
    os.chown(path, nobody(), -1)
    os.close(locks.take_file_lock(tmp_path, "prices", "upbit"))
    assert path.read_text() == "other\n"


def test_advisory_key_is_stable_signed_64_bit_and_distinct():
    keys = {locks.advisory_key(job, exchange) for job in ("symbols", "prices") for exchange in ("upbit", "kis")}
    assert len(keys) == 4
    assert all(-(2 ** 63) <= key < 2 ** 63 for key in keys)
    assert locks.advisory_key("prices", "upbit") == locks.advisory_key("prices", "upbit")


def test_prices_missing_lock_dir_exits_2_before_touching_anything(database, fake_upbit, tmp_path):
    result = run_cli("prices", "--exchange", "upbit",
                     env=upbit_env(database, fake_upbit, WOMBAT_LOCK_DIR=str(tmp_path / "nope")))
    assert result.exit_code == 2
    assert result.stderr.strip().endswith(f"lock directory {tmp_path}/nope does not exist (set WOMBAT_LOCK_DIR)")
    assert len(result.stderr.strip().splitlines()) == 1
    assert fake_upbit.count() == 0
    assert not table_exists(database, "wombat_collect.collect_run")


@needs_root
def test_prices_shared_lock_dir_with_another_users_subdirectory_exits_2(database, fake_upbit, tmp_path):
    shared = shared_directory(tmp_path)
    our_subdirectory(shared).mkdir(mode=0o700)
    os.chown(our_subdirectory(shared), nobody(), -1)
    result = run_cli("prices", "--exchange", "upbit", env=upbit_env(database, fake_upbit, WOMBAT_LOCK_DIR=str(shared)))
    assert result.exit_code == 2
    assert result.stderr.strip().endswith(f"lock directory {our_subdirectory(shared)} belongs to uid {nobody()}, "
                                          "not to this user (uid 0); remove it or set WOMBAT_LOCK_DIR to a directory "
                                          "only this user can write")
    assert len(result.stderr.strip().splitlines()) == 1
    assert fake_upbit.count() == 0
    assert not table_exists(database, "wombat_collect.collect_run")


def test_prices_world_writable_lock_dir_ignores_a_lock_file_planted_there(database, fake_upbit, tmp_path):
    slow_markets(fake_upbit, count=1, latency=0)
    shared = shared_directory(tmp_path)
    planted = hold(shared, "prices", "upbit")  # another user's squatting lock file, held
    try:
        result = run_cli("prices", "--exchange", "upbit", *DAYS_BACK,
                         env=upbit_env(database, fake_upbit, WOMBAT_LOCK_DIR=str(shared)))
    finally:
        os.close(planted)
    assert result.exit_code == 0, result.output
    assert query(database, "SELECT status FROM wombat_collect.collect_run") == [("succeeded",)]
    assert sorted(os.listdir(our_subdirectory(shared))) == ["wombat-collect-prices-upbit.lock",
                                                            "wombat-collect-symbols-upbit.lock"]
    assert (shared / "wombat-collect-prices-upbit.lock").read_text() == "4242\n"


@pytest.mark.parametrize("operation, arguments", [
    (fcntl.LOCK_EX, ("prices", "--exchange", "upbit")),
    (fcntl.LOCK_EX, WORKER_ARGUMENTS),  # a worker, while an ordinary run holds it
    (fcntl.LOCK_SH, ("prices", "--exchange", "upbit")),  # an ordinary run, while workers hold it
], ids=["ordinary", "worker-beside-ordinary", "ordinary-beside-worker"])
def test_prices_lock_held_exits_75_and_touches_nothing(database, fake_upbit, lock_dir, operation, arguments):
    descriptor = hold(lock_dir, "prices", "upbit", operation)
    try:
        result = run_cli(*arguments, env=upbit_env(database, fake_upbit))
    finally:
        os.close(descriptor)
    assert result.exit_code == 75
    assert "prices upbit is already running (pid 4242, lock " in result.stderr
    assert fake_upbit.count() == 0
    assert query(database, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


def test_prices_second_overlapping_run_exits_75_and_writes_nothing(database, fake_upbit):
    slow_markets(fake_upbit, count=3, latency=0)
    holds_candles(fake_upbit)  # the first run stays mid-run until the second has tried
    env = upbit_env(database, fake_upbit, **SLOW, **HELD)
    first = spawn(env, "prices", "--exchange", "upbit", *DAYS_BACK)
    wait_until(lambda: running_count(database) == 1)
    second = run_cli("prices", "--exchange", "upbit", *DAYS_BACK, env=env)
    fake_upbit.release()
    assert second.exit_code == 75
    assert f"prices upbit is already running (pid {first.pid}, lock " in second.stderr
    assert "prices upbit: start on" not in second.stdout
    assert first.wait(timeout=60) == 0
    assert query(database, "SELECT pid, status, rows_inserted"
                           " FROM wombat_collect.collect_run") == [(first.pid, "succeeded", 3 * 5)]
    assert stored_count(database) == 3 * 5


def test_prices_lock_disappears_when_its_holder_is_killed(database, fake_upbit, lock_dir):
    slow_markets(fake_upbit, count=3, latency=0)
    holds_candles(fake_upbit)  # it is mid-run when killed
    process = spawn(upbit_env(database, fake_upbit, **SLOW, **HELD), "prices", "--exchange", "upbit", *DAYS_BACK)
    wait_until(lambda: running_count(database) == 1)
    with pytest.raises(LockBusy):
        locks.take_file_lock(lock_dir, "prices", "upbit")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    os.close(locks.take_file_lock(lock_dir, "prices", "upbit"))
    assert (lock_dir / "wombat-collect-prices-upbit.lock").exists()  # the file stays; the lock does not


def test_prices_ten_simultaneous_runs_give_exactly_one_run(database, fake_upbit):
    slow_markets(fake_upbit, count=5, latency=0)
    holds_candles(fake_upbit)  # the winner holds its lock until every loser has given up
    env = upbit_env(database, fake_upbit, **SLOW, **HELD)
    processes = [spawn(env, "prices", "--exchange", "upbit", *DAYS_BACK) for _ in range(10)]
    wait_until(lambda: sum(process.poll() is not None for process in processes) >= 9, timeout=60)
    fake_upbit.release()
    outcomes = [(process.wait(timeout=60), process.stderr.read()) for process in processes]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0] + [75] * 9, outcomes
    assert all("prices upbit is already running (pid " in stderr for code, stderr in outcomes if code == 75)
    winner = next(process.pid for process, (code, _) in zip(processes, outcomes, strict=True) if code == 0)
    assert query(database, "SELECT pid, status FROM wombat_collect.collect_run") == [(winner, "succeeded")]
    assert stored_count(database) == 5 * 5


def test_prices_wait_runs_once_the_holder_is_done(database, fake_upbit, lock_dir):
    slow_markets(fake_upbit, count=2, latency=0)
    descriptor = hold(lock_dir, "prices", "upbit")
    process = spawn(upbit_env(database, fake_upbit), "prices", "--exchange", "upbit", *DAYS_BACK, "--wait", "20")
    wait_until(lambda: has_open(process, lock_dir / "wombat-collect-prices-upbit.lock"))  # waiting on it now
    assert process.poll() is None and fake_upbit.count() == 0
    os.close(descriptor)
    assert process.wait(timeout=30) == 0, process.stderr.read()
    assert query(database, "SELECT status FROM wombat_collect.collect_run") == [("succeeded",)]


def test_prices_waits_for_a_running_symbols_of_its_exchange(database, fake_upbit, lock_dir):
    slow_markets(fake_upbit, count=2, latency=0)
    descriptor = hold(lock_dir, "symbols", "upbit")
    process = spawn(upbit_env(database, fake_upbit), "prices", "--exchange", "upbit", *DAYS_BACK)
    wait_until(lambda: has_open(process, lock_dir / "wombat-collect-symbols-upbit.lock"))  # probing it now
    assert process.poll() is None and fake_upbit.count() == 0
    os.close(descriptor)
    assert process.wait(timeout=30) == 0
    assert "prices upbit: symbols upbit is running (pid 4242), waiting up to 600s" in process.stdout.read()
    assert stored_count(database) == 2 * 5


def test_prices_gives_up_on_symbols_after_the_bound(database, fake_upbit, lock_dir, monkeypatch):
    monkeypatch.setattr(locks, "SYMBOLS_WAIT_SECONDS", 0.3)
    descriptor = hold(lock_dir, "symbols", "upbit")
    try:
        result = run_cli("prices", "--exchange", "upbit", env=upbit_env(database, fake_upbit))
    finally:
        os.close(descriptor)
    assert result.exit_code == 75
    assert "prices upbit: symbols upbit still running after 0.3s (pid 4242, lock " in result.stderr
    assert fake_upbit.count() == 0


@pytest.mark.parametrize("arguments", [("prices", "--exchange", "upbit"), WORKER_ARGUMENTS],
                         ids=["ordinary", "worker"])
def test_prices_advisory_lock_held_on_another_host_exits_75(database, fake_upbit, arguments):
    slow_markets(fake_upbit, count=2, latency=0)
    assert run_cli("db", "init", env={"DATABASE_URL": database}).exit_code == 0
    other_host = psycopg2.connect(database)
    other_host.autocommit = True
    with other_host.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", (locks.advisory_key("prices", "upbit"),))
        cursor.execute("INSERT INTO wombat_collect.collect_run (job, exchange, host, pid)"
                       " VALUES ('prices', 'upbit', 'db2', 77)")
    try:
        result = run_cli(*arguments, env=upbit_env(database, fake_upbit))
    finally:
        other_host.close()
    assert result.exit_code == 75
    assert "prices upbit is already running (pid 77 on db2; database advisory lock)" in result.stderr
    assert fake_upbit.count() == 0
    assert query(database, "SELECT host, status FROM wombat_collect.collect_run") == [("db2", "running")]
    assert query(database, "SELECT count(*) FROM wombat_collect.backfill") == [(0,)]
    assert stored_count(database) == 0


def test_prices_sigterm_while_waiting_for_the_lock_exits_143_untouched(database, fake_upbit, lock_dir):
    descriptor = hold(lock_dir, "prices", "upbit")
    try:
        process = spawn(upbit_env(database, fake_upbit), "prices", "--exchange", "upbit", "--wait", "30")
        wait_until(lambda: has_open(process, lock_dir / "wombat-collect-prices-upbit.lock"))  # waiting on it now
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 143
    finally:
        os.close(descriptor)
    assert process.stderr.read().strip().endswith("interrupted by SIGTERM")
    assert fake_upbit.count() == 0 and not table_exists(database, "wombat_collect.collect_run")


def test_take_file_lock_shared_holders_exclude_only_an_exclusive_one(tmp_path):
    first = locks.take_file_lock(tmp_path, "prices", "upbit", shared=True)
    second = locks.take_file_lock(tmp_path, "prices", "upbit", shared=True)
    try:
        with pytest.raises(LockBusy, match="prices upbit is already running"):
            locks.take_file_lock(tmp_path, "prices", "upbit")
    finally:
        os.close(first)
        os.close(second)
    os.close(locks.take_file_lock(tmp_path, "prices", "upbit"))


def test_take_advisory_locks_shared_holders_exclude_only_an_exclusive_one(database):
    assert run_cli("db", "init", env={"DATABASE_URL": database}).exit_code == 0  # the busy message reads the history
    sessions = [psycopg2.connect(database) for _ in range(4)]
    for session in sessions:
        session.autocommit = True
    try:
        locks.take_advisory_locks(sessions[0], "prices", ["upbit"], shared=True)
        locks.take_advisory_locks(sessions[1], "prices", ["upbit"], shared=True)
        with pytest.raises(LockBusy, match="prices upbit is already running"):
            locks.take_advisory_locks(sessions[2], "prices", ["upbit"])
        sessions[0].close()
        sessions[1].close()  # their server backends end a moment later: wait for the locks to go with them
        locks.take_advisory_locks(sessions[2], "prices", ["upbit"], wait_seconds=30)
        with pytest.raises(LockBusy):
            locks.take_advisory_locks(sessions[3], "prices", ["upbit"], shared=True)
    finally:
        for session in sessions:
            session.close()
