"""Job locks: a flock(2) file per job and exchange on this host, a PostgreSQL
advisory lock per job and exchange across hosts.

Lock files never sit directly in a directory other users can write: there,
anyone could pre-create and hold them (every run exits 75) or plant a symlink
or a hard link. A lock directory that only this user (or root) can write is
used as it is; in a shared sticky one owned by root (/run/lock, /tmp) the files
go into this user's own 0700 subdirectory `wombat-collect-<uid>`; anything
else is refused.

The file lock is taken first, before the database is touched, so a second run
on the same host costs nothing. Its file holds the owner's pid for the
"already running" message; the lock itself vanishes with the process, so a
stale file never blocks anyone. The advisory lock is a session lock on a
dedicated connection that stays open for the whole run: it, too, ends with the
process, which is how a later run tells a dead run from a live one.
"""

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import stat

from wombat_collect.db.queries import statement
from wombat_collect.errors import ConfigError, LockBusy
from wombat_collect.waiting import wait_for

LOCK_FILE_NAME = "wombat-collect-{job}-{exchange}.lock"
SYMBOLS_WAIT_SECONDS = 600  # `prices` waits this long at most for `symbols` of the same exchange
LOCK_FILE_MODE = 0o644
PRIVATE_DIRECTORY_NAME = "wombat-collect-{uid}"  # this user's subdirectory of a shared lock directory
PRIVATE_DIRECTORY_MODE = 0o700
OTHERS_MAY_WRITE = stat.S_IWGRP | stat.S_IWOTH
HINT = "set WOMBAT_LOCK_DIR to a directory only this user can write"
ADVISORY_KEY_PREFIX = "wombat-collect"

logger = logging.getLogger(__name__)


def lock_path(lock_dir, job, exchange):
    """Given the lock directory, a job and an exchange code, return the lock file's path."""
    return lock_dir / LOCK_FILE_NAME.format(job=job, exchange=exchange)


def check_lock_dir(lock_dir, create=True):
    """Given the configured lock directory, return the directory the lock files go into.

    A directory of this user or root that no one else can write is used as it
    is. In a sticky one others can write (/run/lock, /tmp) the lock files go
    into this user's 0700 subdirectory, created if missing (unless `create` is
    false: then a missing one is returned unchecked). Raise ConfigError
    if the directory is missing, not writable, someone else's, writable by
    others without the sticky bit, or if that subdirectory is a symlink,
    someone else's, or open to others.
    """
    try:
        status = os.stat(lock_dir)
    except OSError:
        raise ConfigError(f"lock directory {lock_dir} does not exist (set WOMBAT_LOCK_DIR)") from None
    if not stat.S_ISDIR(status.st_mode):
        raise ConfigError(f"lock directory {lock_dir} is not a directory (set WOMBAT_LOCK_DIR)")
    if status.st_uid not in (os.geteuid(), 0):
        raise ConfigError(f"lock directory {lock_dir} is owned by uid {status.st_uid}, not by this user or root; "
                          f"{HINT}")
    mode = stat.S_IMODE(status.st_mode)
    if not mode & OTHERS_MAY_WRITE:
        return require_writable(lock_dir)
    if not mode & stat.S_ISVTX:
        raise ConfigError(f"lock directory {lock_dir} is writable by others (mode {mode:04o}) and not sticky; {HINT}")
    return private_subdirectory(lock_dir, create)


def private_subdirectory(shared, create=True):
    """Given a shared sticky directory, return this user's 0700 subdirectory of it, created if missing.

    Without `create`, a missing subdirectory is returned as it is (`wombat-collect check` creates nothing).
    Raise ConfigError if it cannot be created, or is a symlink, someone else's, or open to others.
    """
    path = shared / PRIVATE_DIRECTORY_NAME.format(uid=os.geteuid())
    if not create and not os.path.lexists(path):
        return path
    try:
        os.mkdir(path, PRIVATE_DIRECTORY_MODE)
    except FileExistsError:
        pass
    except OSError as error:
        raise ConfigError(f"cannot create lock directory {path}: {error.strerror}; {HINT}") from None
    status = os.lstat(path)
    if not stat.S_ISDIR(status.st_mode):
        kind = "a symlink" if stat.S_ISLNK(status.st_mode) else "not a directory"
        raise ConfigError(f"lock directory {path} is {kind}; remove it or {HINT}")
    if status.st_uid != os.geteuid():
        raise ConfigError(f"lock directory {path} belongs to uid {status.st_uid}, not to this user "
                          f"(uid {os.geteuid()}); remove it or {HINT}")
    if stat.S_IMODE(status.st_mode) != PRIVATE_DIRECTORY_MODE:
        raise ConfigError(f"lock directory {path} has mode {stat.S_IMODE(status.st_mode):04o}, not 0700; "
                          f"remove it or {HINT}")
    return path


def require_writable(lock_dir):
    """Given a lock directory, return it. Raise ConfigError if this user cannot create files in it."""
    if not os.access(lock_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"lock directory {lock_dir} is not writable (set WOMBAT_LOCK_DIR)")
    return lock_dir


def advisory_key(job, exchange):
    """Given a job and an exchange code, return its signed 64-bit advisory lock key."""
    digest = hashlib.sha256(f"{ADVISORY_KEY_PREFIX}-{job}-{exchange}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def open_lock_file(path):
    """Given a lock file path, return an open descriptor (created if missing, links refused).

    Fall back to read-only for a file another user created (flock works on it too).
    Raise ConfigError if the file cannot be opened at all.
    """
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, LOCK_FILE_MODE)
    except PermissionError:
        pass
    except OSError as error:
        raise ConfigError(f"cannot open lock file {path}: {error.strerror}") from None
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise ConfigError(f"cannot open lock file {path}: {error.strerror}") from None


def try_flock(descriptor, operation):
    """Given a descriptor and LOCK_EX or LOCK_SH, return True if the lock was taken at once."""
    try:
        fcntl.flock(descriptor, operation | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def read_holder(descriptor):
    """Given a lock file's descriptor, return the pid written in it, or 'unknown'."""
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def write_pid(descriptor, path):
    """Given a descriptor we hold the exclusive lock on, replace its content by our pid.

    Only a file of our own with no other link is rewritten: truncating a hard
    link would empty whatever file it shares its inode with.
    """
    status = os.fstat(descriptor)
    if status.st_nlink != 1:
        logger.warning("lock file %s has %d links: its content is left as it is (remove it)", path, status.st_nlink)
        return
    if status.st_uid != os.geteuid():
        return  # another user's lock file still locks; the pid is only informative
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
    except OSError:
        pass  # opened read-only: the pid is only informative


def take_file_lock(lock_dir, job, exchange, wait_seconds=0.0, check=None, shared=False):
    """Given a job and an exchange, take its lock file (exclusive; shared: backfill workers); return the descriptor.

    Raise LockBusy naming the holder's pid if it stays held for wait_seconds.
    """
    path = lock_path(lock_dir, job, exchange)
    descriptor = open_lock_file(path)
    operation = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    if not wait_for(lambda: try_flock(descriptor, operation), wait_seconds, check):
        holder = read_holder(descriptor)
        os.close(descriptor)
        raise LockBusy(f"{job} {exchange} is already running (pid {holder}, lock {path})")
    write_pid(descriptor, path)
    return descriptor


def wait_for_symbols(lock_dir, exchange, wait_seconds=None, check=None):
    """Given an exchange, wait while `symbols` for it holds its lock (a shared-lock probe).

    Raise LockBusy if it still runs after wait_seconds (default SYMBOLS_WAIT_SECONDS).
    """
    wait_seconds = SYMBOLS_WAIT_SECONDS if wait_seconds is None else wait_seconds
    path = lock_path(lock_dir, "symbols", exchange)
    descriptor = open_lock_file(path)
    try:
        if try_flock(descriptor, fcntl.LOCK_SH):
            return
        logger.info("prices %s: symbols %s is running (pid %s), waiting up to %ds",
                    exchange, exchange, read_holder(descriptor), wait_seconds)
        if not wait_for(lambda: try_flock(descriptor, fcntl.LOCK_SH), wait_seconds, check):
            raise LockBusy(f"prices {exchange}: symbols {exchange} still running after {wait_seconds}s "
                           f"(pid {read_holder(descriptor)}, lock {path})")
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def file_locks(lock_dir, job, exchanges, wait_seconds=0.0, check=None, shared=False):
    """Given a job and exchange codes, hold their lock files for the duration of the block.

    `prices` first waits (bounded) for a running `symbols` of each exchange.
    `shared` takes them in shared mode (backfill workers run side by side).
    Raise ConfigError if the lock directory is unusable, LockBusy if a lock is held.
    """
    lock_dir = check_lock_dir(lock_dir)
    descriptors = []
    try:
        for exchange in exchanges:
            if job == "prices":
                wait_for_symbols(lock_dir, exchange, check=check)
            descriptors.append(take_file_lock(lock_dir, job, exchange, wait_seconds, check, shared))
        yield
    finally:
        for descriptor in descriptors:
            os.close(descriptor)


def try_advisory_lock(connection, key, shared=False):
    """Given an autocommit connection and a key, return True if its session lock (exclusive or shared) was taken."""
    with connection.cursor() as cursor:
        cursor.execute(statement("try_advisory_lock_shared" if shared else "try_advisory_lock"), {"key": key})
        return cursor.fetchone()[0]


def describe_holder(connection, job, exchange):
    """Given a job whose advisory lock is held elsewhere, return 'pid N on HOST' from its history."""
    with connection.cursor() as cursor:
        cursor.execute(statement("running_run"), {"job": job, "exchange": exchange})
        row = cursor.fetchone()
    return f"pid {row[1]} on {row[0]}" if row else "another session"


def take_advisory_locks(connection, job, exchanges, wait_seconds=0.0, check=None, shared=False):
    """Given a dedicated autocommit connection, take the advisory lock of each job and exchange.

    The locks (shared ones for backfill workers) last as long as the connection.
    Raise LockBusy if one stays held for wait_seconds.
    """
    for exchange in exchanges:
        key = advisory_key(job, exchange)
        if not wait_for(lambda key=key: try_advisory_lock(connection, key, shared), wait_seconds, check):
            holder = describe_holder(connection, job, exchange)
            raise LockBusy(f"{job} {exchange} is already running ({holder}; database advisory lock)")
