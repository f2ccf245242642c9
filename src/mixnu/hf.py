"""Hugging Face glue shared by the stages: quiet progress bars, one-line error text, device choice.

Ground layer: imports nothing of mixnu's, and transformers / torch only inside the functions, so
importing it is cheap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["quiet_transformers", "first_line", "resolve_device"]


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No transformers progress bars (weights loading/saving) inside: our own bar is the progress display."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of `str(exc)` (at most `limit` characters), else the exception's type name;
    for one-line `mixnu: error: …` messages about a library's failure."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; any other name is returned as is."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
