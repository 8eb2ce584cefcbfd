"""Benchmark rows appended to a CSV file, under one header per file."""
from __future__ import annotations

import csv
from pathlib import Path


def append_csv(path: Path, fields: list[str], rows: list[dict], float_format: str) -> None:
    """Appends ``rows`` (dicts keyed by ``fields``) to ``path``, writing the header into a new or empty file; a
    file that holds other columns (another benchmark's) is refused rather than mixed."""
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if header != fields:
            raise ValueError(f"{path} holds other columns than this benchmark writes (another family's results?); "
                             f"pass another --csv")
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: (format(v, float_format) if isinstance(v, float) else v) for k, v in row.items()})
