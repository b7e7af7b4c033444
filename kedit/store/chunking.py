"""Split a document into passages: paragraphs, then sentences packed up to `max_chars`.

>>> split_passages("One. Two.\\n\\nThree is longer.", max_chars=20)
['One. Two.', 'Three is longer.']
"""

from __future__ import annotations

import re

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _hard_split(text: str, max_chars: int) -> list[str]:
    pieces, current = [], ""
    for word in text.split():
        while len(word) > max_chars:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        if current and len(current) + 1 + len(word) > max_chars:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    if current:
        pieces.append(current)
    return pieces


def split_passages(text: str, max_chars: int = 600) -> list[str]:
    passages: list[str] = []
    for paragraph in _PARAGRAPH.split(text):
        current = ""
        for sentence in _SENTENCE.split(" ".join(paragraph.split())):
            if not sentence:
                continue
            if current and len(current) + 1 + len(sentence) > max_chars:
                passages.append(current)
                current = ""
            if len(sentence) > max_chars:
                passages.extend(_hard_split(sentence, max_chars))
            else:
                current = f"{current} {sentence}".strip()
        if current:
            passages.append(current)
    return passages
