"""The one error type for unreadable or inconsistent data files, and where the shared real data lives."""
from __future__ import annotations

import os
from pathlib import Path


class DataFileError(ValueError):
    """A data file that cannot be read or contradicts itself; the message starts with the file's path."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def shared_data_dir() -> Path | None:
    """The folder of real data sets (``$MEDKERN_DATA``, else ``<repo>/../shared/data``), or None when absent.

    The files there are never copied into the repository, so everything that reads them must cope with None.
    """
    env = os.environ.get("MEDKERN_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "data"
    return root if root.is_dir() else None
