"""The fake KIS host's app key, secret and tokens: the defaults, the token record and the token
endpoint's error answer (FakeKis issues, reuses, expires and revokes them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tests.fakes.common import Response, json_response
from tests.fakes.kis_protocol import MESSAGES

DEFAULT_APP_KEY = "PSfakeappkey" + "0" * 24
DEFAULT_APP_SECRET = "fakeappsecret" + "0" * 167
DEFAULT_TOKEN_THROTTLE_SECONDS = 60
DEFAULT_TOKEN_LIFETIME_SECONDS = 86400
TOKEN_EXPIRY_FORMAT = "%Y-%m-%d %H:%M:%S"


def oauth_error(error_code: str) -> Response:
    """Given an error code, return the token endpoint's HTTP 403 error answer."""
    return json_response(403, {"error_code": error_code, "error_description": MESSAGES[error_code]})


@dataclass
class IssuedToken:
    """A token the fake issued."""

    token: str
    app_key: str
    issued_at: datetime
    expires_at: datetime
    expired: bool = False
    revoked: bool = False

