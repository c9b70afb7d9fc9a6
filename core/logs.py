"""
Structured JSON logging for every safebus process.

Log lines carry event ids, topics, offsets and reason codes — never names,
dates of birth, narratives or any other payload content.  Call sites are
responsible for that; `configure()` only decides the format.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

__all__ = ["configure", "get_logger"]


def configure(*, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send structlog output as one JSON object per line to `stream` (stderr by default)."""
    logging.basicConfig(level=level, stream=stream or sys.stderr, format="%(message)s")
    # librdkafka reports transient broker states (coordinator loading, retries)
    # as warnings; they are noise unless debugging.
    logging.getLogger("safebus.librdkafka").setLevel(max(logging.ERROR, logging.getLevelName(level)))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """Return a logger bound to a component `name` (for example ``processor.encompass``)."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(component=name)
    return logger
