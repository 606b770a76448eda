"""The log lines of ``smsroute`` and of the worker and edge processes it starts: the message, then the
record's structured fields as ``key=value``.

The engine logs many events with their details as fields (``log.error("retention sweep failed",
extra={"store": ..., "reason": ...})``): a store's name, an alarm's kind, a count, an account's pseudonym.
The plain ``%(message)s`` format the processes used dropped every one of them, so an operator read
``retention sweep failed`` or ``body store alarm`` with nothing saying which store or which alarm, and
``mail not sent`` without the template the README promises. The fields are what the call sites chose to
log - never a body, key, number, header value or account id (each site names accounts by pseudonym) - so
printing them adds no personal data. Fields are printed for smsroute's own loggers only: another
library's were never reviewed for what they hold.
"""

from __future__ import annotations

import json
import logging
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
OWN_LOGGERS = ("engine", "actors", "storage", "__main__")
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime",
                                                                                "taskName"}


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and " " not in value and "=" not in value and '"' not in value \
            else json.dumps(value)
    if isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


class FieldsFormatter(logging.Formatter):
    """``FORMAT``, then `` key=value`` for each field a call site of smsroute passed with ``extra``
    (before any traceback)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        text = super().formatMessage(record)
        if record.name.split(".", 1)[0] not in OWN_LOGGERS:
            return text
        fields = [f"{k}={_value(v)}" for k, v in vars(record).items()
                  if k not in _STANDARD and not k.startswith("_")]
        return " ".join([text, *fields])


def configure(level: int) -> None:
    """Log to stderr at ``level`` with :class:`FieldsFormatter` (the processes' ``basicConfig``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(FieldsFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
