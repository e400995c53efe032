"""How reglab states an exception to a user, a store or a report: on one line."""

from __future__ import annotations


def one_line(err: BaseException, *, first_line: bool = False) -> str:
    """``ExceptionType: message`` on one line: the message's lines joined, or only its first line
    (`first_line`, for messages whose later lines are generic advice, such as CUDA's)."""
    lines = str(err).strip().splitlines()
    text = (lines[0].strip() if lines else "") if first_line else " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
