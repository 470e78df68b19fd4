"""Process logging: one line per record, level from ``LOG_LEVEL``, never a secret.

Messages in this code base are written without credentials; structured JSON access
logs arrive with the observability work (telemetry).
"""

from __future__ import annotations

import logging
import os
import sys


def setup_logging() -> None:
    level = os.environ.get("LOG_LEVEL", "info").upper()
    if level == "WARN":
        level = "WARNING"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level, logging.INFO))
    logging.getLogger("uvicorn.error").setLevel(max(root.level, logging.WARNING))
