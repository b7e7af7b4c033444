"""Whether a free-text answer states a value (the conflict suite's and the router study's criterion)."""

from __future__ import annotations


def normalised(text: str | None) -> str:
    """Case-folded, full stops dropped, spaces collapsed, a leading "the " removed.

    >>> normalised("The  United States.")
    'united states'
    """
    text = " ".join((text or "").casefold().replace(".", " ").split())
    return text[4:] if text.startswith("the ") else text


def states(answer: str, value: str) -> bool:
    """The answer states `value`: one contains the other, case- and article-insensitive.

    >>> states("United States of America", "United States of America"), states("Paris", "France")
    (True, False)
    """
    a, v = normalised(answer), normalised(value)
    return bool(a and v) and (v in a or a in v)
