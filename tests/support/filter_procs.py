"""Start a built-in filter (``python -m filters.<name>``) as a real process on a free loopback port."""

from __future__ import annotations

from pathlib import Path

from tests.support.service import ServiceProcess


class FilterProcess(ServiceProcess):
    """``python -m filters.<name> --port N [args]``."""

    def __init__(self, name: str, *args: str, workdir: Path) -> None:
        super().__init__(f"filters.{name}", list(args), workdir, label=f"filter {name}")
        self.name = name
