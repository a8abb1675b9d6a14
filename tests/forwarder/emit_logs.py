"""A sandbox process for the tests: logs through EventsHandler, prints what it sent."""

from __future__ import annotations

import json
import logging

from cse_bridge.integrations.logging import EventsHandler


class Keep(logging.Handler):
    """Keeps the records as this process sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def main() -> None:
    keep = Keep()
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    root.addHandler(EventsHandler())
    root.addHandler(keep)
    logging.getLogger("app.db").debug("connected to %s", "db1")
    logging.getLogger("app").warning("disk", extra={"percent": 91, "tags": ["a"]})
    try:
        int("bad input")
    except ValueError:
        logging.getLogger("app.api").exception("request failed", extra={"user": "ann"})
    logging.getLogger().critical("root says bye")
    formatter = logging.Formatter()
    for record in keep.records:
        print(
            json.dumps(
                {
                    "level": record.levelname,
                    "logger": record.name,
                    "message": record.getMessage(),
                    "created": record.created,
                    "excText": formatter.formatException(record.exc_info)
                    if record.exc_info
                    else None,
                    "attributes": {
                        k: v
                        for k, v in vars(record).items()
                        if k in {"percent", "tags", "user"}
                    },
                }
            )
        )


if __name__ == "__main__":
    main()
