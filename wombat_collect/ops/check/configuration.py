"""The configuration checks: the settings parse, the env file read, the database chosen, the lock and state
directories. Nothing is created."""

import os
import stat

from wombat_collect.ops.check.results import CRITICAL, OK, WARNING, result


def check_configuration(load_settings, settings_box):
    """Given the settings loader, return the configuration's CheckResult; put the Settings in settings_box."""
    from wombat_collect.errors import ConfigError

    try:
        settings = load_settings()
    except ConfigError as error:
        return result("configuration", CRITICAL, f"{error}; fix it in the environment or the env file")
    settings_box.append(settings)
    return result("configuration", OK, f"every variable parses (timeframes {' '.join(settings.timeframes)}, "
                                       f"{settings.workers} workers, HTTP timeout {settings.http_timeout:g} s)")


def check_env_file(env_file):
    """Given --env-file (or None), return the CheckResult of the env file that is read: which, whose, what mode."""
    from wombat_collect.config import env_file_path, untrusted_reason

    path, implicit = env_file_path(env_file, os.environ)
    if path is None:
        return result("env file", OK, "none (no --env-file, WOMBAT_ENV_FILE or ./.env): the environment only")
    try:
        status = os.stat(path)
    except OSError as error:
        return result("env file", CRITICAL, f"{path}: {error.strerror}; fix the path (--env-file, WOMBAT_ENV_FILE)")
    distrust = untrusted_reason(status)
    mode = stat.S_IMODE(status.st_mode)
    if distrust:
        what = "ignored" if implicit else "refused"
        return result("env file", WARNING if implicit else CRITICAL,
                      f"{path} is {what}: it is {distrust}; chown it to this user or root, chmod 600 {path}")
    if not os.access(path, os.R_OK):
        return result("env file", CRITICAL, f"{path} (mode {mode:04o}) cannot be read by this user")
    if stat.S_ISREG(status.st_mode) and mode & stat.S_IROTH:
        return result("env file", WARNING, f"{path} has mode {mode:04o}: every user may read its secrets; "
                                           f"chmod 600 {path} (640 with a group, as for cron)")
    return result("env file", OK, f"{path}, owner uid {status.st_uid}, mode {mode:04o}")


def check_database_choice(read_variables, settings):
    """Given the variable loader and Settings, return which database will be used and how it was chosen."""
    from wombat_collect.config import mask_dsn

    variables = read_variables()
    if (variables.get("DATABASE_URL") or "").strip():
        ignored = " (POSTGRES_SERVER is set too, and ignored)" if (variables.get("POSTGRES_SERVER") or "").strip() \
            else ""
        return result("database", OK, f"DATABASE_URL names {mask_dsn(settings.database_url)}{ignored}")
    if settings.database_url:
        return result("database", OK, f"POSTGRES_SERVER and friends name {mask_dsn(settings.database_url)}")
    return result("database", WARNING, f"no DATABASE_URL or POSTGRES_SERVER: the embedded PostgreSQL under "
                                       f"{settings.data_dir} (for trying out; set DATABASE_URL for a service)")


def check_lock_directory(settings):
    """Given Settings, return the lock directory's CheckResult (locks.check_lock_dir's rules; nothing created)."""
    from wombat_collect.ops.locks import check_lock_dir

    directory = check_lock_dir(settings.lock_dir, create=False)
    if not os.path.lexists(directory):
        return result("lock directory", OK, f"{settings.lock_dir} is usable; the first run creates {directory} "
                                            "(mode 0700)")
    return result("lock directory", OK, f"{directory} is writable by this user")


def check_state_directory(settings):
    """Given Settings, return the state directory's CheckResult: it exists with mode 0700 and is writable."""
    path = settings.state_dir
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return result("state directory", OK, f"{path} does not exist yet; the first KIS token creates it (mode 0700)")
    mode = stat.S_IMODE(status.st_mode)
    if not stat.S_ISDIR(status.st_mode):
        return result("state directory", CRITICAL, f"{path} is not a directory; remove it or set WOMBAT_STATE_DIR")
    if not os.access(path, os.W_OK | os.X_OK):
        return result("state directory", CRITICAL, f"{path} (owner uid {status.st_uid}, mode {mode:04o}) is not "
                                                   "writable by this user; chown it, or set WOMBAT_STATE_DIR")
    if mode != 0o700:
        return result("state directory", WARNING, f"{path} has mode {mode:04o}, not 0700 (it holds the KIS token "
                                                  f"cache); chmod 700 {path}")
    return result("state directory", OK, f"{path}, mode 0700")
