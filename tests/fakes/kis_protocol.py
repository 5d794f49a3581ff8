"""The fake KIS host's wire: paths, TR ids, answer codes and messages, and the error answers
(see tests/fakes/kis_server.py for the choices made)."""

from __future__ import annotations

from tests.fakes.common import Response, json_response

TOKEN_PATH = "/oauth2/tokenP"
REVOKE_PATH = "/oauth2/revokeP"
PRICE_PATH = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
MASTER_PREFIX = "/common/master/"
QUOTES_PATH = "/uapi/domestic-stock/v1/quotations/intstock-multprice"
PRICE_TR_ID = "FHKST03010100"
QUOTES_TR_ID = "FHKST11300006"
MAX_QUOTE_CODES = 30
CUSTOMER_TYPE = "P"

MAX_ROWS = 100
PAD_EMPTY_COUNT = 2
MARKET_DIV_CODES = frozenset({"J", "NX", "UN"})
PERIOD_CODES = frozenset({"D", "W", "M", "Y"})
OK_CODE = "MCA00000"
OK_MESSAGE = "정상처리 되었습니다." + " " * 42
REVOKE_MESSAGE = "접근토큰 폐기에 성공하였습니다"

MESSAGES = {
    "EGW00002": "서버 에러가 발생했습니다.",
    "EGW00101": "유효하지 않은 요청입니다.",
    "EGW00102": "AppKey는 필수입니다.",
    "EGW00103": "유효하지 않은 AppKey입니다.",
    "EGW00104": "AppSecret는 필수입니다.",
    "EGW00105": "유효하지 않은 AppSecret입니다.",
    "EGW00121": "유효하지 않은 token 입니다.",
    "EGW00123": "기간이 만료된 token 입니다.",
    "EGW00133": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)",
    "EGW00201": "초당 거래건수를 초과하였습니다.",
    "EGW00205": "credentials_type이 유효하지 않습니다.(Bearer)",
    "EGW00208": "고객유형(custtype)이 유효하지 않습니다.",
    "OPSQ0002": "없는 서비스 코드 입니다",
    "OPSQ2001": "ERROR : INPUT_FIELD_NAME {field}",
    "MCA00124": "해당 서비스를 찾을수 없습니다",
}
NOT_FOUND_HTML = b"<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1></body></html>"


class Reject(Exception):
    """Raised inside a route to answer with ``response`` instead."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def rest_error(status: int, msg_cd: str, **format_fields: str) -> Response:
    """Given a status and a message code, return a KIS REST error answer (rt_cd "1")."""
    message = MESSAGES[msg_cd].format(**format_fields)
    return json_response(status, {"rt_cd": "1", "msg_cd": msg_cd, "msg1": message})

