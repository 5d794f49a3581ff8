"""wombat-collect: daily market-data collection for the wombat backend."""

__version__ = "0.1.0"
