"""Checks on every value before it reaches SQLite: clear errors instead of corrupt rows.

>>> clean_name("  Ellie Kemper ", "subject")
'Ellie Kemper'
>>> to_timestamp("2020-01-01")
'2020-01-01T00:00:00.000000Z'
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import date, datetime, timezone
from typing import Any

from memory.errors import InvalidInputError

MAX_NAME_CHARS = 500
MAX_SENTENCE_CHARS = 4_000
MAX_DOCUMENT_CHARS = 5_000_000
MAX_PROVENANCE_BYTES = 64_000
_ALLOWED_CONTROL = {"\n", "\t"}
# Unicode categories Cc (C0, DEL, C1) and Cs (surrogates): one regex scan instead of a per-character loop
_CONTROLS = "\x00-\x1f\x7f-\x9f\ud800-\udfff"
_CONTROL_PATTERNS: dict[frozenset[str], re.Pattern[str]] = {}

TimeLike = str | date | datetime | None


def decode_text(value: Any, field: str) -> str:
    """`value` as a str: bytes must be valid UTF-8, and a str must be encodable as UTF-8."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{field} is not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    if not isinstance(value, str):
        raise InvalidInputError(f"{field} must be text, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"{field} contains a lone surrogate (not valid Unicode text)") from None
    return value


def _check_controls(text: str, field: str, allowed: set[str]) -> None:
    key = frozenset(allowed)
    pattern = _CONTROL_PATTERNS.get(key)
    if pattern is None:
        pattern = _CONTROL_PATTERNS[key] = re.compile(
            f"(?![{''.join(re.escape(c) for c in sorted(allowed))}])[{_CONTROLS}]"
            if allowed
            else f"[{_CONTROLS}]"
        )
    found = pattern.search(text)
    if found is not None:
        raise InvalidInputError(
            f"{field} contains control character {found.group()!r} at position {found.start()}"
        )


def clean_name(value: Any, field: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """A subject/object/source name: one line, not empty, at most `max_chars` characters."""
    text = " ".join(decode_text(value, field).split(" ")).strip()
    if not text:
        raise InvalidInputError(f"{field} is empty")
    if len(text) > max_chars:
        raise InvalidInputError(f"{field} is {len(text)} characters long; at most {max_chars} are allowed")
    _check_controls(text, field, set())
    return text


def clean_text(value: Any, field: str, max_chars: int) -> str:
    """Free text (a sentence, a document): not blank, newlines and tabs allowed, at most `max_chars`."""
    text = decode_text(value, field).strip()
    if not text:
        raise InvalidInputError(f"{field} is empty")
    if len(text) > max_chars:
        raise InvalidInputError(f"{field} is {len(text)} characters long; at most {max_chars} are allowed")
    _check_controls(text, field, _ALLOWED_CONTROL)
    return text


def to_timestamp(value: TimeLike, field: str = "time") -> str | None:
    """A time as a sortable UTC ISO-8601 string (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise InvalidInputError(f"{field} is an empty string (use None for 'unbounded')")
        if text.isdigit() and len(text) == 4:
            text += "-01-01"
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInputError(f"{field} {text[:40]!r} is not an ISO-8601 date or time") from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{field} must be a date, datetime or ISO-8601 string")
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ").rjust(27, "0")


def check_validity(valid_from: str | None, valid_to: str | None) -> None:
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise InvalidInputError(f"valid_to ({valid_to}) must be after valid_from ({valid_from})")


def clean_confidence(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"confidence must be a number in [0, 1], got {value!r}") from None
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise InvalidInputError(f"confidence must be in [0, 1], got {value!r}")
    return number


def clean_json_object(value: Mapping[str, Any] | None, field: str) -> str:
    """A JSON object (provenance, reasons...) serialised; at most 64 kB."""
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{field} must be a mapping, got {type(value).__name__}")
    try:
        text = json.dumps(dict(value), ensure_ascii=False, sort_keys=True, allow_nan=False)
        text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise InvalidInputError(f"{field} is not JSON-serialisable text: {exc}") from None
    if len(text.encode("utf-8")) > MAX_PROVENANCE_BYTES:
        raise InvalidInputError(f"{field} is over {MAX_PROVENANCE_BYTES} bytes as JSON")
    return text


def now_timestamp() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
