"""The symbols job: store each listing group, deactivate what is no longer listed; select symbols."""

import logging
import time

from wombat_collect.db import store
from wombat_collect.db.connection import connect, database_errors, transaction
from wombat_collect.errors import ConfigError, WombatError
from wombat_collect.jobs.results import LISTING_STOPPERS, JobResult, failure_of
from wombat_collect.validate import clean_symbol, symbol_problem

logger = logging.getLogger("wombat_collect.jobs")  # the one logger name of every jobs module


def collect_symbols(dsn, exchange_id, collector, client):
    """Given a collector, store its listing: upsert listed symbols, deactivate missing ones.

    Each listing group (Upbit: all markets; KIS: one master file each) is fetched
    and written on its own: a failed group changes nothing. A listing that would
    deactivate more than half of the group's active symbols is refused. A listed
    row that fails validation is rejected and counted; the group's others are stored.
    Return a JobResult.
    """
    result = JobResult("symbols", collector.EXCHANGE.code)
    result.group_noun = "market" if all(collector.LISTING_GROUPS) else "listing"
    for group in collector.LISTING_GROUPS:
        label = group or "all markets"
        try:
            records, rejected = valid_symbols(collector.fetch_symbols(client, group))
            counts, deactivated = _store_listing(dsn, exchange_id, group, records)
        except Exception as error:
            message = failure_of(error, LISTING_STOPPERS)
            logger.error("symbols %s %s: %s", result.exchange, label, message)
            result.errors.append(f"{label}: {message}")
            result.symbols_failed += 1
            continue
        _count_listing(result, label, records, rejected, counts, deactivated)
    if result.errors and not result.groups_ok:
        result.fatal = "; ".join(result.errors)
    result.duration = time.monotonic() - result.started
    return result


def valid_symbols(records):
    """Given listed SymbolRecords, return (the valid ones, names cleaned; reasons of the rejected ones)."""
    valid, rejected = [], []
    for record in records:
        problem = symbol_problem(record)
        if problem:
            rejected.append(problem)
        else:
            valid.append(clean_symbol(record))
    return valid, rejected


def _count_listing(result, label, records, rejected, counts, deactivated):
    """Given one stored listing group, add it to the JobResult and log its line."""
    result.groups_ok += 1
    result.rows += counts
    result.symbols_ok += len(records)
    result.symbols_skipped += deactivated
    result.rejected += len(rejected)
    logger.info("symbols %s %s: %d listed, %d new, %d changed, %d deactivated",
                result.exchange, label, len(records), counts.inserted, counts.updated, deactivated)
    if rejected:
        message = f"{len(rejected)} listed row(s) rejected, first: {rejected[0]}"
        logger.warning("symbols %s %s: %s", result.exchange, label, message)
        result.errors.append(f"{label}: {message}")


def collect_listing_if_empty(dsn, exchange_id, collector, client):
    """Given an exchange with no stored symbols, collect its listing; return that JobResult.

    Return None when symbols are already stored.
    """
    connection = connect(dsn)
    try:
        with database_errors("reading the stored symbols", connection), transaction(connection):
            if store.stored_symbols(connection, exchange_id):
                return None
    finally:
        connection.close()
    logger.info("prices %s: no symbols stored yet, collecting the listing first", collector.EXCHANGE.code)
    listing = collect_symbols(dsn, exchange_id, collector, client)
    logger.info("%s", listing.summary())
    return listing


class ListingRefused(WombatError):
    """A listing would deactivate too much of what is stored: likely truncated."""


def _store_listing(dsn, exchange_id, group, records):
    """Given one listing group's records, write them in one transaction.

    Return (UpsertCounts, number deactivated). Raise ListingRefused past the guard.
    """
    connection = connect(dsn)
    try:
        with database_errors("storing the listing", connection), transaction(connection, long_running=True):
            stored = [item for item in store.stored_symbols(connection, exchange_id)
                      if group is None or item.market == group]
            listed = {record.symbol for record in records}
            active = [item for item in stored if item.is_active]
            missing = [item.id for item in active if item.symbol not in listed]
            if len(missing) * 2 > len(active):
                raise ListingRefused(
                    f"listing would deactivate {len(missing)} of {len(active)} active symbols; "
                    "refusing (truncated answer?)")
            counts = store.upsert_symbols(connection, exchange_id, records)
            deactivated = store.set_symbols_active(connection, missing, False)
        return counts, deactivated
    finally:
        connection.close()


def select_symbols(dsn, exchange_id, markets=(), symbols=()):
    """Given filters, return the active StoredSymbols to collect prices for.

    Raise ConfigError naming any --symbol the exchange does not have.
    """
    connection = connect(dsn)
    try:
        with database_errors("reading the stored symbols", connection), transaction(connection):
            stored = store.stored_symbols(connection, exchange_id)
    finally:
        connection.close()
    known = {item.symbol for item in stored}
    unknown = sorted(set(symbols) - known)
    if unknown:
        raise ConfigError(f"unknown symbol(s): {', '.join(unknown)}")
    return [item for item in stored if item.is_active
            and (not markets or item.market in markets)
            and (not symbols or item.symbol in symbols)]
