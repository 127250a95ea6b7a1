"""Log records with the policy's secrets replaced by their `${NAME}` placeholders.

Every record of the process passes through the log record factory, whatever logger or handler
it goes to (third-party ones included: httpx logs the URLs it requests), so the factory is the
one place to redact logs. It is process-wide by nature; the app's lifespan installs it and
takes it away, the worker installs it for its whole life.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from llamafarm.config.policy import ConfigPolicy

_FORMATTER = logging.Formatter()


def _redact_record(record: logging.LogRecord, policy: ConfigPolicy) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports it when it formats the record
        return
    redacted = policy.redact(message)
    if redacted != message:
        record.msg, record.args = redacted, None
    if record.exc_info and record.exc_info[1] is not None:
        text = _FORMATTER.formatException(record.exc_info)
        cleaned = policy.redact(text)
        if cleaned != text:
            record.exc_text = cleaned  # handlers use it instead of formatting exc_info again
    if record.stack_info:
        record.stack_info = policy.redact(record.stack_info)


def install_log_redaction(policy: ConfigPolicy) -> Callable[[], None]:
    """Redact every log record from now on; returns the function that stops it."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record, policy)
        return record

    logging.setLogRecordFactory(factory)

    def uninstall() -> None:
        if logging.getLogRecordFactory() is factory:
            logging.setLogRecordFactory(previous)

    return uninstall


@contextlib.contextmanager
def redacted_logs(policy: ConfigPolicy) -> Iterator[None]:
    """Log records redacted while the block runs (not at all when no variable is allowed)."""
    if not policy.env_allow:
        yield
        return
    uninstall = install_log_redaction(policy)
    try:
        yield
    finally:
        uninstall()
