"""KIS access tokens: issue one, share it on disk between processes, renew it when rejected.

KIS asks for one token a day and throttles issuance (EGW00133), so a token is
cached in a file under the state directory, named by the API host and a
SHA-256 of the app key (never the key itself), mode 0600 in a 0700 directory,
written atomically. Processes issue under an flock of a lock file and re-read
the cache once they hold it, so concurrent runs issue one token between them.
Facts: ../shared/reference/kis-api.md ("Access token").
"""

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

from wombat_collect.errors import AuthenticationError, ExchangeBlocked, ExchangeError
from wombat_collect.http import Verdict, snippet
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
                 clock=None, sleep=time.sleep):
        self.client = client
        self.path = cache_path(state_dir, client.base_url, app_key)
        self.lock_path = self.path.with_suffix(".lock")
        self.retry_wait = retry_wait
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
                                                     f"{error.strerror or type(error).__name__}")
                    raise self._failure from None
                except TokenUnavailable as error:
                    self._failure = error
                    raise
            return self._token

    def invalidate(self):
        """Forget the token this thread last sent, in memory and in the file, unless already renewed."""
        rejected = getattr(self._local, "sent", None)
        with self._lock:
            if self._token is not None and self._token.value == rejected:
                self._token = None
            try:
                with locked(self.lock_path):
                    cached = read_cache(self.path)
                    if cached is not None and cached.value == rejected:
                        self.path.unlink(missing_ok=True)
            except OSError as error:
                logger.warning("kis: cannot drop the rejected token from %s: %s", self.path, error.strerror)
        logger.info("kis: access token rejected, getting a new one")

    def _load_or_issue(self):
        """Return the cached token if usable, else issue one under the file lock and cache it."""
        cached = read_cache(self.path)
        if cached is not None and self._clock() < cached.renew_at:
            return cached
        with locked(self.lock_path):
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
        return datetime.strptime(str(payload.get("access_token_token_expired")), EXPIRY_FORMAT).replace(tzinfo=KST)
    except ValueError:
        pass
    try:
        return now + timedelta(seconds=int(str(payload.get("expires_in"))))
    except ValueError:
        raise TokenUnavailable("kis: the token answer has no readable expiry") from None


def classify_token(answer):
    """Given an Answer of /oauth2/tokenP, return (Verdict, message).

    EGW00133 counts as OK: TokenCache waits for it itself, longer than HttpClient backs off.
    """
    payload = answer.payload if isinstance(answer.payload, dict) else None
    if payload is None:
        verdict = Verdict.RETRY if answer.status == 200 or answer.status >= 500 else Verdict.FAIL
        return verdict, f"HTTP {answer.status}, not JSON ({answer.content_type or 'no type'}): {snippet(answer.text)}"
    code = str(payload.get("error_code") or payload.get("msg_cd") or "")
    if (answer.status == 200 and payload.get("access_token")) or code == THROTTLED_CODE:
        return Verdict.OK, ""
    description = str(payload.get("error_description") or payload.get("msg1") or "").strip()
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
    """Given the token file's path, return its Token, or None if missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
        token = Token(data["access_token"], datetime.fromisoformat(data["expires_at"]),
                      datetime.fromisoformat(data["renew_at"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("kis: ignoring unreadable token cache %s (%s)", path, type(error).__name__)
        return None
    register_secret(token.value)
    return token


def write_cache(path, token, now):
    """Given the token file's path and a Token, write it atomically with mode 0600 in a 0700 directory."""
    ensure_directory(path.parent)
    data = {"access_token": token.value, "expires_at": token.expires_at.isoformat(),
            "renew_at": token.renew_at.isoformat(), "issued_at": now.isoformat()}
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".token-", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            os.fchmod(stream.fileno(), FILE_MODE)
            json.dump(data, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def ensure_directory(directory):
    """Given the cache directory, create it (and its parents) and make it mode 0700."""
    directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    if directory.stat().st_mode & 0o777 != DIRECTORY_MODE:
        directory.chmod(DIRECTORY_MODE)


@contextlib.contextmanager
def locked(lock_path):
    """Given a lock file's path, hold an exclusive flock on it (released when the block ends)."""
    ensure_directory(lock_path.parent)
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
