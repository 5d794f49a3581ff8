"""The `db` commands: migrate (`db init`), hand over to the backend's migrations (`db hand-over`)."""

import logging

from wombat_collect.collectors import EXCHANGE_CODES
from wombat_collect.commands.common import import_collector, open_database

logger = logging.getLogger("wombat_collect")


def run_db_init(app):
    """Given the App, apply pending migrations and create missing exchange rows."""
    from wombat_collect.jobs.database import backend_hint

    collectors = [import_collector(code) for code in EXCHANGE_CODES]
    dsn, _ = open_database(app, [collector for collector in collectors if collector])
    logger.info("database is up to date")
    hint = backend_hint(dsn)
    if hint:
        logger.info(hint)


def run_db_hand_over(app):
    """Given the App, bring the database to the backend's alembic head; log what was done."""
    from wombat_collect.config import mask_dsn
    from wombat_collect.db.connection import resolve_dsn
    from wombat_collect.jobs.database import hand_over_database

    dsn = resolve_dsn(app.settings())
    logger.debug("database %s", mask_dsn(dsn))
    logger.info("hand-over: %s", hand_over_database(dsn))
