"""Fake Upbit and KIS servers speaking real HTTP on loopback, for tests."""

from tests.fakes.common import FAULT_KINDS, RequestRecord, dumps_with_decimals, max_requests_in_window
from tests.fakes.kis_server import (
    FakeKis,
    build_master_row,
    build_master_zip,
    make_kis_rows,
    master_field_slices,
)
from tests.fakes.upbit_server import FakeUpbit, make_upbit_candles, make_upbit_markets

__all__ = [
    "FAULT_KINDS",
    "FakeKis",
    "FakeUpbit",
    "RequestRecord",
    "build_master_row",
    "build_master_zip",
    "dumps_with_decimals",
    "make_kis_rows",
    "make_upbit_candles",
    "make_upbit_markets",
    "master_field_slices",
    "max_requests_in_window",
]
