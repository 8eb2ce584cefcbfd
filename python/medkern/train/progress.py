"""Progress display for the training loops: a tqdm bar on a terminal, nothing per batch elsewhere (the loops
log one line per epoch), and in either case the same computation."""
from __future__ import annotations

import sys


class Batches:
    """Iterates a DataLoader's batches, behind a tqdm bar titled ``desc`` when ``desc`` is given and standard
    error is a terminal (into a log file a bar writes thousands of carriage-return lines).

    The loader's iterator is made here, before tqdm sees it: ``tqdm(loader)`` made the DataLoader draw from
    torch's global generator twice instead of once, which moved every later draw (dropout, augmentation),
    so showing a bar changed the trained weights."""

    def __init__(self, loader, desc: str | None):
        self._it = iter(loader)
        self._bar = None
        if desc is not None and sys.stderr.isatty():
            from tqdm.auto import tqdm
            self._bar = tqdm(self._it, total=len(loader), desc=desc, leave=False, dynamic_ncols=True)

    def __iter__(self):
        return iter(self._bar if self._bar is not None else self._it)

    def show(self, **values: str) -> None:
        """Running figures beside the bar (nothing without one)."""
        if self._bar is not None:
            self._bar.set_postfix(**values)
