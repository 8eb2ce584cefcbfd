"""``medkern bench``: medkern against torch in one process, interleaved, median of repeats."""
