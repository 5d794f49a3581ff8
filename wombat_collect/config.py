"""Settings from the environment and a .env file (the environment wins).

Every variable is listed in docs/configuration.md. Bad values raise
ConfigError with one line naming the variable; secrets never appear in it.
"""

import ipaddress
import logging
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from wombat_collect.errors import ConfigError

DEFAULT_UPBIT_API_URL = "https://api.upbit.com"
DEFAULT_KIS_REAL_URL = "https://openapi.koreainvestment.com:9443"
DEFAULT_KIS_VIRTUAL_URL = "https://openapivts.koreainvestment.com:29443"
DEFAULT_KIS_MASTER_URL = "https://new.real.download.dws.co.kr/common/master"
DEFAULT_KIS_RATE_REAL = 18.0
DEFAULT_KIS_RATE_VIRTUAL = 1.0
DEFAULT_UPBIT_RATE = 10.0
DEFAULT_KIS_TOKEN_RETRY_WAIT = 61.0  # seconds before retrying a throttled token issuance (EGW00133)
DEFAULT_BACKFILL_DAYS = 365
DEFAULT_WORKERS = 8
DEFAULT_LOCK_TIMEOUT = 60.0  # seconds a transaction waits for a lock another session holds
DEFAULT_STATEMENT_TIMEOUT = 300.0  # seconds an upsert or the newest-candle scan may run (normally well under 1)
MAX_TIMEOUT = 86400.0
DSN_OPTION = re.compile(r"(?:^|\s)(?:-c\s*|--)([\w-]+)\s*=")  # `-c name=value` or `--name=value` in `options`
DEFAULT_TIMEFRAMES = ("1d",)  # timeframes.DEFAULT_NAMES
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}
SECRET_VARIABLES = ("POSTGRES_PASSWORD", "KIS_APP_KEY", "KIS_APP_SECRET")  # and DATABASE_URL with a password
IMPLICIT_ENV_FILE = ".env"  # read from the current directory when no env file is named
LOOPBACK_NAMES = {"localhost"}  # besides 127.0.0.0/8 and ::1: where plain http is allowed (the test fakes)
SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know, read once at start-up."""

    database_url: str | None = field(repr=False)
    data_dir: Path
    state_dir: Path
    lock_dir: Path
    upbit_api_url: str
    upbit_rate_limit: float
    kis_api_url: str
    kis_master_url: str
    kis_app_key: str | None = field(repr=False)
    kis_app_secret: str | None = field(repr=False)
    kis_rate_limit: float
    kis_adjusted: bool
    backfill_days: int
    workers: int
    http_timeout: float
    metrics_dir: Path | None
    ping_url: str | None = field(repr=False)
    sentry_dsn: str | None = field(repr=False)
    kis_token_retry_wait: float = DEFAULT_KIS_TOKEN_RETRY_WAIT
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT  # None: leave the session's own value
    statement_timeout: float | None = DEFAULT_STATEMENT_TIMEOUT
    kis_virtual: bool = False  # KIS_ENV=virtual: the paper-trading host, which lacks some TRs
    timeframes: tuple = DEFAULT_TIMEFRAMES
    source_address: str | None = None  # WOMBAT_SOURCE_ADDRESS: the local address exchange requests leave from


def read_environment(env_file=None, environ=None):
    """Given an optional .env path, return the merged variables (environment wins).

    An empty variable in the environment does not hide the file's value (an
    empty DATABASE_URL must not silently switch to the embedded server).

    The file is `env_file`, else $WOMBAT_ENV_FILE, else ./.env when it exists.
    A file that another user could have written is not trusted: ./.env is then
    skipped with one warning. Raise ConfigError if a named file is missing,
    unreadable or untrusted.
    """
    environ = dict(os.environ if environ is None else environ)
    path, implicit = env_file_path(env_file, environ)
    if path is None:
        return environ
    merged = read_env_file(path, implicit)
    merged.update({name: value for name, value in environ.items() if value.strip()})  # empty: unset
    return merged


def env_file_path(env_file, environ):
    """Given --env-file (or None) and the environment, return (the env file to read or None, whether implicit).

    The file is `env_file`, else $WOMBAT_ENV_FILE, else ./.env when it exists (implicit).
    """
    path = env_file or environ.get("WOMBAT_ENV_FILE") or None
    if path is not None:
        return path, False
    return (IMPLICIT_ENV_FILE if Path(IMPLICIT_ENV_FILE).is_file() else None), True


def read_env_file(path, implicit):
    """Given an env file's path, return its variables ({} for an untrusted ./.env, with a warning).

    Raise ConfigError if it cannot be read, or if a named file is untrusted.
    """
    from dotenv import dotenv_values

    try:
        with open(path, encoding="utf-8") as stream:
            status = os.fstat(stream.fileno())
            distrust = untrusted_reason(status)
            if distrust and implicit:
                logger.warning("ignoring env file %s: it is %s", path, distrust)
                return {}
            if distrust:
                raise ConfigError(f"refusing env file {path}: it is {distrust}")
            file_values = dotenv_values(stream=stream)
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        if isinstance(error, UnicodeDecodeError):
            reason = f"not UTF-8 text (byte {error.start})"
        raise ConfigError(f"cannot read env file {path}: {reason}") from None
    merged = {name: value for name, value in file_values.items() if value is not None}
    warn_if_exposed(path, status.st_mode, merged)
    return merged


def untrusted_reason(status):
    """Given an env file's fstat, return why another user may have written it ('' if no one could).

    Trusted: owned by this user or root, and (a regular file) not writable by group or others.
    """
    if status.st_uid not in (os.geteuid(), 0):
        return f"owned by uid {status.st_uid}, not by this user or root"
    if stat.S_ISREG(status.st_mode) and status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by group or others (mode {stat.S_IMODE(status.st_mode):04o})"
    return ""


def warn_if_exposed(path, mode, file_values):
    """Given an env file's path, mode and values, warn (one line) if every user may read its secrets."""
    if not stat.S_ISREG(mode) or not mode & stat.S_IROTH:
        return
    names = [name for name in SECRET_VARIABLES if (file_values.get(name) or "").strip()]
    if _dsn_has_password(file_values.get("DATABASE_URL")):
        names.append("DATABASE_URL")
    if names:
        logger.warning("env file %s holds secrets (%s) but every user may read it (mode %04o); run: chmod 600 %s",
                       path, ", ".join(names), stat.S_IMODE(mode), path)


def _dsn_has_password(dsn):
    import psycopg2.extensions

    try:
        return bool((dsn or "").strip() and psycopg2.extensions.parse_dsn(dsn.strip()).get("password"))
    except psycopg2.ProgrammingError:
        return False


def load_settings(variables):
    """Given merged variables, return Settings. Raise ConfigError on a bad value."""
    kis_env = (variables.get("KIS_ENV") or "real").strip().lower()
    if kis_env not in ("real", "virtual"):
        raise ConfigError(f"KIS_ENV must be 'real' or 'virtual', not {kis_env!r}")
    virtual = kis_env == "virtual"
    default_kis_rate = DEFAULT_KIS_RATE_VIRTUAL if virtual else DEFAULT_KIS_RATE_REAL
    dsn = database_url(variables)
    default_kis_url = DEFAULT_KIS_VIRTUAL_URL if virtual else DEFAULT_KIS_REAL_URL
    return Settings(
        database_url=dsn,
        data_dir=_path(variables, "WOMBAT_DATA_DIR", _xdg(variables, "XDG_DATA_HOME", ".local/share")),
        state_dir=_path(variables, "WOMBAT_STATE_DIR", default_state_dir(variables)),
        lock_dir=_path(variables, "WOMBAT_LOCK_DIR", default_lock_dir(variables)),
        upbit_api_url=_exchange_url(variables, "UPBIT_API_URL", DEFAULT_UPBIT_API_URL),
        upbit_rate_limit=_number(variables, "UPBIT_RATE_LIMIT", DEFAULT_UPBIT_RATE, 0.1, 1000),
        kis_api_url=_exchange_url(variables, "KIS_API_URL", default_kis_url),
        kis_master_url=_exchange_url(variables, "KIS_MASTER_URL", DEFAULT_KIS_MASTER_URL),
        kis_app_key=_secret(variables, "KIS_APP_KEY"),
        kis_app_secret=_secret(variables, "KIS_APP_SECRET"),
        kis_rate_limit=_number(variables, "KIS_RATE_LIMIT", default_kis_rate, 0.1, 1000),
        kis_adjusted=_boolean(variables, "KIS_ADJUSTED", True),
        backfill_days=int(_number(variables, "WOMBAT_BACKFILL_DAYS", DEFAULT_BACKFILL_DAYS, 1, 36500, whole=True)),
        workers=int(_number(variables, "WOMBAT_WORKERS", DEFAULT_WORKERS, 1, 64, whole=True)),
        http_timeout=_number(variables, "WOMBAT_HTTP_TIMEOUT", 30.0, 0.1, 600),
        metrics_dir=_path(variables, "WOMBAT_METRICS_DIR", None),
        ping_url=_url(variables, "WOMBAT_PING_URL", None),
        sentry_dsn=(variables.get("SENTRY_DSN") or "").strip() or None,
        kis_token_retry_wait=_number(variables, "KIS_TOKEN_RETRY_WAIT", DEFAULT_KIS_TOKEN_RETRY_WAIT, 0, 600),
        lock_timeout=_timeout(variables, "WOMBAT_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT, dsn, "lock_timeout"),
        statement_timeout=_timeout(variables, "WOMBAT_STATEMENT_TIMEOUT", DEFAULT_STATEMENT_TIMEOUT, dsn,
                                   "statement_timeout"),
        kis_virtual=virtual,
        timeframes=_timeframes(variables),
        source_address=_source_address(variables),
    )


def _timeout(variables, name, default, dsn, setting):
    """Given a timeout variable, return its seconds, or None to leave the session's value alone.

    0 means none of ours. Unset means `default`, unless the DSN's `options` set `setting`
    (e.g. `?options=-c%20lock_timeout%3D5s`): the operator's value then applies.
    Raise ConfigError if malformed.
    """
    if (variables.get(name) or "").strip() == "" and setting in dsn_settings(dsn):
        return None
    return _number(variables, name, default, 0, MAX_TIMEOUT) or None


def dsn_settings(dsn):
    """Given a DSN (or None), return the names of the server settings its `options` parameter sets."""
    import psycopg2.extensions

    try:
        options = psycopg2.extensions.parse_dsn(dsn).get("options", "") if dsn else ""
    except psycopg2.ProgrammingError:
        return set()
    return {name.replace("-", "_") for name in DSN_OPTION.findall(options)}


def _timeframes(variables):
    """Given variables, return WOMBAT_TIMEFRAMES as timeframe names. Raise ConfigError naming a bad one."""
    from wombat_collect.timeframes import parse_names

    text = (variables.get("WOMBAT_TIMEFRAMES") or "").strip()
    if not text:
        return DEFAULT_TIMEFRAMES
    try:
        return parse_names(text)
    except ValueError as error:
        raise ConfigError(f"WOMBAT_TIMEFRAMES {error}") from None


def database_url(variables):
    """Given variables, return a libpq DSN, or None for the embedded server.

    DATABASE_URL wins when non-empty; else POSTGRES_SERVER and friends.
    Raise ConfigError if a value is malformed, or if the URL's host holds an
    '@' (an unencoded '@' in the password, whose tail would show in errors).
    """
    import psycopg2.extensions

    url = (variables.get("DATABASE_URL") or "").strip()
    if url:
        try:
            parts = psycopg2.extensions.parse_dsn(url)
        except psycopg2.ProgrammingError:
            raise ConfigError("DATABASE_URL is not a valid libpq connection URI") from None
        if "@" in parts.get("host", ""):  # postgresql://u:p@ss@host/db: password 'p', host 'ss@host'
            raise ConfigError("DATABASE_URL has an '@' in its host part: percent-encode an '@' in the user name "
                              "or password as %40")
        if not all(port.isdigit() and 1 <= int(port) <= 65535 for port in parts.get("port", "5432").split(",")):
            raise ConfigError("DATABASE_URL has a port that is not a number between 1 and 65535")
        if parts.get("sslmode", "prefer") not in SSL_MODES:
            raise ConfigError(f"DATABASE_URL has an unknown sslmode (use one of {', '.join(sorted(SSL_MODES))})")
        return url
    server = (variables.get("POSTGRES_SERVER") or "").strip()
    if not server:
        return None
    port = int(_number(variables, "POSTGRES_PORT", 5432, 1, 65535, whole=True))
    parts = {
        "host": server,
        "port": str(port),
        "dbname": (variables.get("POSTGRES_DB") or "").strip() or None,
        "user": (variables.get("POSTGRES_USER") or "").strip() or None,
        "password": variables.get("POSTGRES_PASSWORD") or None,
    }
    return psycopg2.extensions.make_dsn(**{key: value for key, value in parts.items() if value})


def mask_dsn(dsn):
    """Given a DSN (URI or keywords), return 'user@host:port/dbname' without the password."""
    import psycopg2.extensions

    try:
        parts = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "<unparsable DSN>"
    user = parts.get("user", "")
    host = parts.get("host", "localhost")
    port = parts.get("port", "5432")
    return f"{user + '@' if user else ''}{host}:{port}/{parts.get('dbname', '')}"


def default_state_dir(variables):
    """Return systemd's $STATE_DIRECTORY when set, else $XDG_STATE_HOME/wombat-collect."""
    state_directory = (variables.get("STATE_DIRECTORY") or "").split(":")[0]
    if state_directory:
        return Path(state_directory)
    return _xdg(variables, "XDG_STATE_HOME", ".local/state")


def default_lock_dir(variables):
    """Return /run/lock when writable, else $XDG_RUNTIME_DIR, else the temp directory.

    The lock files never go straight into a directory others can write: in
    /run/lock or /tmp, locks.check_lock_dir uses this user's 0700 subdirectory.
    """
    if os.access("/run/lock", os.W_OK):
        return Path("/run/lock")
    runtime = (variables.get("XDG_RUNTIME_DIR") or "").strip()
    if runtime and os.access(runtime, os.W_OK):
        return Path(runtime)
    return Path(tempfile.gettempdir())


def _xdg(variables, name, fallback):
    """Return $name/wombat-collect, or ~/fallback/wombat-collect."""
    base = (variables.get(name) or "").strip()
    return Path(base or Path.home() / fallback) / "wombat-collect"


def _secret(variables, name):
    """Given a secret's variable name, return its value: the variable's, or the content of the file NAME_FILE names.

    Return None if neither is set. Raise ConfigError if both are, or if the file is unreadable or empty.
    """
    value = (variables.get(name) or "").strip()
    path = (variables.get(f"{name}_FILE") or "").strip()
    if value and path:
        raise ConfigError(f"set {name} or {name}_FILE, not both")
    if not path:
        return value or None
    try:
        content = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"{name}_FILE {path}: cannot read it: {reason}") from None
    if not content:
        raise ConfigError(f"{name}_FILE {path} is empty")
    return content


def _source_address(variables):
    """Return WOMBAT_SOURCE_ADDRESS as a normalized IP address, or None. Raise ConfigError if it is not one."""
    import ipaddress

    value = (variables.get("WOMBAT_SOURCE_ADDRESS") or "").strip()
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ConfigError(f"WOMBAT_SOURCE_ADDRESS must be an IP address of this host, not {value!r}") from None


def _path(variables, name, default):
    value = (variables.get(name) or "").strip()
    return Path(value).expanduser() if value else default


def _url(variables, name, default):
    """Given a variable name, return its http(s) URL without a trailing slash. Raise ConfigError if malformed."""
    value = (variables.get(name) or "").strip().rstrip("/")
    if not value:
        return default
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number in range
        valid = False
    if not valid or any(character.isspace() for character in value):
        raise ConfigError(f"{name} must be an http(s) URL")
    return value


def _exchange_url(variables, name, default):
    """Given an exchange URL variable, return its URL. Raise ConfigError unless https (http: loopback hosts only).

    The KIS app key and secret travel in every request: plain http would send them in clear.
    """
    value = _url(variables, name, default)
    parts = urlsplit(value)
    if parts.scheme != "https" and not is_loopback(parts.hostname):
        raise ConfigError(f"{name} must be an https URL (http only for a loopback host such as 127.0.0.1)")
    return value


def is_loopback(host):
    """Given a host name or address, return whether it is loopback: localhost, 127.0.0.0/8 or ::1."""
    if (host or "").lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _number(variables, name, default, minimum, maximum, whole=False):
    """Given a variable name and bounds, return its number. Raise ConfigError if malformed."""
    text = (variables.get(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{name} must be {kind}, not {text!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum:g} and {maximum:g}, not {text}")
    return value


def _boolean(variables, name, default):
    text = (variables.get(name) or "").strip().lower()
    if not text:
        return default
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ConfigError(f"{name} must be true or false, not {text!r}")
