"""Locality probes: general facts whose predicted tokens must not move when facts are edited."""

from __future__ import annotations

from collections.abc import Sequence

from kedit.scoring import score_targets, token_agreement

# Fixed locality probes: general facts whose predicted tokens must not move when facts are edited. Thirty-two
# of them, so the drift budget moves in steps of ~3% rather than ~8% (one probe of twelve).
LOCALITY_PROBES: tuple[tuple[str, str], ...] = (
    ("The capital of Japan is", "Tokyo"),
    ("The capital of Italy is", "Rome"),
    ("The largest planet in the solar system is", "Jupiter"),
    ("Water is made of hydrogen and", "oxygen"),
    ("The author of Romeo and Juliet is", "William Shakespeare"),
    ("The currency of the United Kingdom is the", "pound"),
    ("The Great Wall is located in", "China"),
    ("The first president of the United States was", "George Washington"),
    ("The chemical symbol for gold is", "Au"),
    ("The official language of Brazil is", "Portuguese"),
    ("Mount Everest is located in", "Nepal"),
    ("The Mona Lisa was painted by", "Leonardo da Vinci"),
    ("The capital of Germany is", "Berlin"),
    ("The capital of Spain is", "Madrid"),
    ("The Eiffel Tower is located in", "Paris"),
    ("The largest ocean on Earth is the", "Pacific Ocean"),
    ("The theory of relativity was developed by", "Albert Einstein"),
    ("The official language of Mexico is", "Spanish"),
    ("The capital of Canada is", "Ottawa"),
    ("The Amazon River flows through", "Brazil"),
    ("Harry Potter was written by", "J. K. Rowling"),
    ("The iPhone is made by", "Apple"),
    ("The capital of Russia is", "Moscow"),
    ("The Statue of Liberty is located in", "New York"),
    ("The currency of Japan is the", "yen"),
    ("The Beatles were a band from", "Liverpool"),
    ("The capital of Australia is", "Canberra"),
    ("Windows is an operating system developed by", "Microsoft"),
    ("The official language of Egypt is", "Arabic"),
    ("The Taj Mahal is located in", "India"),
    ("The inventor of the telephone was", "Alexander Graham Bell"),
    ("The capital of Egypt is", "Cairo"),
)


def probe_scores(bundle) -> list:
    """The model's teacher-forced scores of every locality probe's answer."""
    return score_targets(bundle, [p for p, _ in LOCALITY_PROBES], [t for _, t in LOCALITY_PROBES])


def locality_drift(baseline: Sequence, now: Sequence) -> float:
    """Share of locality-probe tokens whose prediction changed between two `probe_scores` readings."""
    agree = [token_agreement(b, a) for b, a in zip(baseline, now)]
    return 1.0 - sum(agree) / len(agree)


__all__ = ["LOCALITY_PROBES", "locality_drift", "probe_scores"]
