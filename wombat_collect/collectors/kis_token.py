"""KIS access tokens: issue one, share it on disk between processes, renew it when rejected.

KIS asks for one token a day and throttles issuance (EGW00133), so a token is
cached in a file under the state directory, named by the API host and a
SHA-256 of the app key (never the key itself), mode 0600 in a 0700 directory,
written atomically. Processes issue under an flock of a lock file and re-read
the cache once they hold it, so concurrent runs issue one token between them.
The directory, the token file and the lock file are never followed through a
symbolic link (O_NOFOLLOW), and the lock is waited for a bounded time.
A run uses at most two tokens: when a second token is rejected (the
replacement of a rejected one), the run stops instead of issuing a third.
Facts: ../shared/reference/kis-api.md ("Access token").
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

from wombat_collect.errors import AuthenticationError, ConfigError, ExchangeBlocked, ExchangeError
from wombat_collect.http import Verdict
from wombat_collect.http_text import flatten, snippet
from wombat_collect.logging_setup import register_secret

TOKEN_PATH = "/oauth2/tokenP"  # noqa: S105 - a URL path, not a password
TOKEN_GROUP = "token"  # noqa: S105 - the name of a pacer, not a password
ISSUE_RATE = 1.0  # token requests per second at most; KIS's own throttle is handled by THROTTLED_CODE
RENEW_MARGIN = timedelta(minutes=10)  # stop using a token this long before it expires
KST = timezone(timedelta(hours=9), "KST")
EXPIRY_FORMAT = "%Y-%m-%d %H:%M:%S"  # access_token_token_expired, KST without offset
THROTTLED_CODE = "EGW00133"  # issuance throttled: wait, then retry once
RATE_CODE = "EGW00201"
CREDENTIAL_CODES = {"EGW00102", "EGW00103", "EGW00104", "EGW00105"}  # app key/secret missing or wrong
CACHE_DIRECTORY = "kis-tokens"
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
KEY_DIGEST_LENGTH = 16  # hex characters of SHA-256(app key) in the file name
LOCK_WAIT_SECONDS = 120.0  # how long to wait for another process's issuance, beyond KIS_TOKEN_RETRY_WAIT
LOCK_POLL_SECONDS = 0.1
REJECTED_TOKENS_LIMIT = 2  # the second distinct token rejected in a run stops it: at most two tokens per run
NO_FOLLOW = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

logger = logging.getLogger(__name__)


class TokenUnavailable(AuthenticationError, ExchangeBlocked):
    """No access token could be had: every data call would fail, so the run stops at once."""


@dataclass(frozen=True)
class Token:
    """An access token, when KIS says it expires, and when we stop using it."""

    value: str
    expires_at: datetime
    renew_at: datetime


class TokenCache:
    """The authenticator of KIS data calls: headers() with a valid token, invalidate() on rejection.

    `client` is an HttpClient for the API host without an authenticator, with a
    "token" pacer. State lives here: the token in memory, the last token each
    thread sent (so a late rejection never drops a newer token), and a sticky
    failure (a failed issuance is not retried by every symbol).
    """

    def __init__(self, client, app_key, app_secret, state_dir, retry_wait,
                 clock=None, sleep=time.sleep, lock_wait=None):
        self.client = client
        self.path = cache_path(state_dir, client.base_url, app_key)
        self.lock_path = self.path.with_suffix(".lock")
        self.retry_wait = retry_wait
        self.lock_wait = retry_wait + LOCK_WAIT_SECONDS if lock_wait is None else lock_wait
        self._rejected = set()  # tokens KIS rejected during this run
        check_cache_paths(self.path, self.lock_path)
        self._app_key = app_key
        self._app_secret = app_secret
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._sleep = sleep
        self._lock = threading.Lock()
        self._local = threading.local()
        self._token = None
        self._failure = None

    def headers(self):
        """Return the auth headers of a data call. Raise TokenUnavailable if no token can be had."""
        token = self.token()
        self._local.sent = token.value
        return {"authorization": f"Bearer {token.value}", "appkey": self._app_key,
                "appsecret": self._app_secret}

    def token(self):
        """Return a usable Token: from memory, else the file cache, else a new one."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            if self._token is None or self._clock() >= self._token.renew_at:
                try:
                    self._token = self._load_or_issue()
                except OSError as error:
                    self._failure = TokenUnavailable(f"kis: cannot use the token cache {self.path.parent}: "
                                                     f"{describe(error)}")
                    raise self._failure from None
                except TokenUnavailable as error:
                    self._failure = error
                    raise
            return self._token

    def invalidate(self):
        """Forget the token this thread last sent, in memory and in the file, unless already renewed.

        Raise TokenUnavailable (sticky: the run stops) when this is the second
        distinct token rejected in this run, so a run never issues a third.
        """
        rejected = getattr(self._local, "sent", None)
        with self._lock:
            if self._failure is not None:
                raise self._failure
            if rejected in self._rejected:
                return  # another thread already reported this one
            self._rejected.add(rejected)
            if len(self._rejected) >= REJECTED_TOKENS_LIMIT:
                self._failure = TokenUnavailable(
                    "kis: the replacement access token was rejected too (EGW00121/EGW00123); "
                    "stopping without issuing another (is the system clock right? is the app key still valid?)")
                raise self._failure
            if self._token is not None and self._token.value == rejected:
                self._token = None
            self._drop_from_file(rejected)
        logger.info("kis: access token rejected, getting a new one")

    def _drop_from_file(self, rejected):
        """Given a rejected token, delete the cache file if it still holds that token (warn if impossible)."""
        try:
            with locked(self.lock_path, self.lock_wait):
                cached = read_cache(self.path)
                if cached is not None and cached.value == rejected:
                    with open_directory(self.path.parent) as directory:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self.path.name, dir_fd=directory)
        except (OSError, TokenUnavailable) as error:
            logger.warning("kis: cannot drop the rejected token from %s: %s", self.path, describe(error))

    def _load_or_issue(self):
        """Return the cached token if usable, else issue one under the file lock and cache it."""
        cached = read_cache(self.path)
        if cached is not None and self._clock() < cached.renew_at:
            return cached
        with locked(self.lock_path, self.lock_wait):
            cached = read_cache(self.path)  # another process may have issued meanwhile
            if cached is not None and self._clock() < cached.renew_at:
                return cached
            token = self._issue()
            write_cache(self.path, token, self._clock())
        logger.info("kis: issued an access token valid until %s KST",
                    f"{token.expires_at.astimezone(KST):%Y-%m-%d %H:%M}")
        return token

    def _issue(self):
        """Return a new Token, waiting once if issuance is throttled. Raise TokenUnavailable if refused."""
        payload = self._request()
        if is_throttled(payload):
            logger.warning("kis: token issuance throttled (%s), retrying in %gs", THROTTLED_CODE, self.retry_wait)
            self._sleep(self.retry_wait)
            payload = self._request()
            if is_throttled(payload):
                raise TokenUnavailable(f"kis: token issuance still throttled ({THROTTLED_CODE}) after "
                                       f"waiting {self.retry_wait:g}s; try again later")
        return parse_token(payload, self._clock())

    def _request(self):
        """POST the issuance request; return the JSON answer. Raise TokenUnavailable on an error."""
        body = {"grant_type": "client_credentials", "appkey": self._app_key, "appsecret": self._app_secret}
        try:
            return self.client.request_json("POST", TOKEN_PATH, TOKEN_GROUP, body=body,
                                            headers={"content-type": "application/json; charset=utf-8"})
        except ExchangeError as error:
            raise TokenUnavailable(str(error)) from None


def is_throttled(payload):
    """Given a token answer, return whether it is the EGW00133 "issued too recently" refusal."""
    return isinstance(payload, dict) and THROTTLED_CODE in (payload.get("error_code"), payload.get("msg_cd"))


def parse_token(payload, now):
    """Given a successful token answer and the time, return a Token (its value registered as a secret).

    Raise TokenUnavailable if the answer holds no token or no expiry.
    """
    value = payload.get("access_token") if isinstance(payload, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise TokenUnavailable("kis: the token answer holds no access_token")
    register_secret(value)
    expires_at = parse_expiry(payload, now)
    if expires_at <= now:
        raise TokenUnavailable(f"kis: the new token expired already at {expires_at:%Y-%m-%d %H:%M:%S%z} "
                               "(is the system clock right?)")
    renew_at = expires_at - min(RENEW_MARGIN, (expires_at - now) / 2)
    return Token(value, expires_at, renew_at)


def parse_expiry(payload, now):
    """Given a token answer, return its expiry: access_token_token_expired (KST), else now + expires_in.

    Raise TokenUnavailable if neither is readable.
    """
    try:
        expires_at = datetime.strptime(str(payload.get("access_token_token_expired")), EXPIRY_FORMAT)
        return expires_at.replace(tzinfo=KST).astimezone(timezone.utc)  # 9999-12-31 KST overflows here
    except (ValueError, OverflowError):
        pass
    try:
        return now + timedelta(seconds=int(str(payload.get("expires_in"))))
    except (ValueError, OverflowError):  # not a whole number, or beyond any date (1e30 seconds)
        raise TokenUnavailable("kis: the token answer has no readable expiry") from None


def classify_token(answer):
    """Given an Answer of /oauth2/tokenP, return (Verdict, message).

    EGW00133 counts as OK: TokenCache waits for it itself, longer than HttpClient backs off.
    """
    payload = answer.payload if isinstance(answer.payload, dict) else None
    if payload is None:
        verdict = Verdict.RETRY if answer.status == 200 or answer.status >= 500 else Verdict.FAIL
        return verdict, f"HTTP {answer.status}, not JSON ({answer.content_type or 'no type'}): {snippet(answer.text)}"
    code = flatten(payload.get("error_code") or payload.get("msg_cd") or "")
    if (answer.status == 200 and payload.get("access_token")) or code == THROTTLED_CODE:
        return Verdict.OK, ""
    description = flatten(payload.get("error_description") or payload.get("msg1") or "")
    message = f"HTTP {answer.status}: {code or 'no error code'} {description}".rstrip()
    if code == RATE_CODE:
        return Verdict.THROTTLED, message
    if code in CREDENTIAL_CODES:
        return Verdict.FAIL, f"{message} (check KIS_APP_KEY and KIS_APP_SECRET)"
    return (Verdict.RETRY if answer.status >= 500 else Verdict.FAIL), message


def cache_path(state_dir, base_url, app_key):
    """Given the state directory, the API base URL and the app key, return the token file's path."""
    host = re.sub(r"[^A-Za-z0-9.-]", "_", urlsplit(base_url).netloc or base_url)
    digest = hashlib.sha256(app_key.encode("utf-8")).hexdigest()[:KEY_DIGEST_LENGTH]
    return Path(state_dir) / CACHE_DIRECTORY / f"{host}-{digest}.json"


def read_cache(path):
    """Given the token file's path, return its Token, or None if missing or unreadable (a symlink is unreadable)."""
    try:
        with open_directory(path.parent) as directory:
            descriptor = os.open(path.name, os.O_RDONLY | NO_FOLLOW, dir_fd=directory)
        with os.fdopen(descriptor, encoding="utf-8") as stream:
            data = json.load(stream)
        token = Token(data["access_token"], datetime.fromisoformat(data["expires_at"]),
                      datetime.fromisoformat(data["renew_at"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("kis: ignoring unreadable token cache %s (%s)", path, describe(error))
        return None
    register_secret(token.value)
    return token


def write_cache(path, token, now):
    """Given the token file's path and a Token, write it atomically with mode 0600 in a 0700 directory.

    The temporary file is created next to it (O_EXCL, O_NOFOLLOW) and renamed over it.
    """
    data = {"access_token": token.value, "expires_at": token.expires_at.isoformat(),
            "renew_at": token.renew_at.isoformat(), "issued_at": now.isoformat()}
    with open_directory(path.parent, create=True) as directory:
        temporary = f".token-{secrets.token_hex(8)}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NO_FOLLOW, FILE_MODE, dir_fd=directory)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                os.fchmod(stream.fileno(), FILE_MODE)
                json.dump(data, stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path.name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=directory)
            raise


def check_cache_paths(path, lock_path):
    """Given the token file's and lock file's paths, raise ConfigError if either, or their directory, is a symlink.

    Checked once before any request, so a planted link stops the run with exit 2.
    """
    for candidate in (path.parent, path, lock_path):
        if candidate.is_symlink():
            raise ConfigError(f"the KIS token cache {candidate} is a symbolic link; refusing to follow it "
                              "(remove it, or set WOMBAT_STATE_DIR to a private directory)")


@contextlib.contextmanager
def open_directory(directory, create=False):
    """Given the cache directory, yield a descriptor of it (created with mode 0700 if `create`).

    Raise OSError if it is missing, a symlink (ELOOP) or not a directory; make it 0700 if it is not.
    """
    if create:
        directory.parent.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIRECTORY_MODE)
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | NO_FOLLOW)
    try:
        if create and os.fstat(descriptor).st_mode & 0o777 != DIRECTORY_MODE:
            os.fchmod(descriptor, DIRECTORY_MODE)
        yield descriptor
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def locked(lock_path, wait):
    """Given a lock file's path and the seconds to wait for it, hold an exclusive flock on it.

    The lock file is opened with O_NOFOLLOW. Raise TokenUnavailable if another
    process holds the lock longer than `wait`, OSError if it cannot be opened.
    """
    with open_directory(lock_path.parent, create=True) as directory:
        descriptor = os.open(lock_path.name, os.O_RDWR | os.O_CREAT | NO_FOLLOW, FILE_MODE, dir_fd=directory)
    try:
        deadline = time.monotonic() + wait
        while not try_flock(descriptor):
            if time.monotonic() >= deadline:
                raise TokenUnavailable(f"kis: another process held the token lock {lock_path} for more than "
                                       f"{wait:g}s; giving up")
            time.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(descriptor)


def try_flock(descriptor):
    """Given an open file, take an exclusive flock without blocking; return whether it was taken."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def describe(error):
    """Given an OSError (or another error), return a short reason; a symlink is named as such."""
    if isinstance(error, OSError) and error.errno == errno.ELOOP:
        return "a symbolic link, refused"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
