"""Load KnowEdit-style and MQuAKE benchmark files into `EditCase` / `MQuAKECase`.

A loader takes a file or a directory. The format is detected from the record fields (KnowEdit kinds:
`zsre`, `recent`, `counterfact`, `wikibio`, `cf-easyedit`, `zsre-mend`; or `mquake`). Records that do not
fit the format are reported (file, index, reason), skipped and counted; a file of the other benchmark
raises `BenchmarkDataError` before any model work.

Probe answers follow EasyEdit's `prepare_knowedit_data`: nested alias lists are kept in order and the
first alias (`while isinstance(an, list): an = an[0]`) is the scored one; a probe whose first alias is
blank is dropped, as EasyEdit drops it.

>>> from kedit.paths import require_data_dir
>>> loaded = load_knowedit(require_data_dir() / "KnowEdit" / "ZsRE")   # doctest: +SKIP
>>> loaded.kind, len(loaded.cases), loaded.cases[0].target_new          # doctest: +SKIP
('zsre', 651, 'Noctuidae')
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from benchmarks.data.cases import EditCase, MQuAKECase
from benchmarks.data.records import RecordError, edit_case, mquake_case
from kedit.errors import KeditError

KNOWEDIT_KINDS = ("zsre", "recent", "counterfact", "wikibio", "cf-easyedit", "zsre-mend")
MQUAKE = "mquake"
_SAMPLE = 25  # records looked at to detect a file's kind

T = TypeVar("T")


class BenchmarkDataError(KeditError):
    """A benchmark file or directory cannot be used: wrong benchmark, unknown format, nothing to load."""


@dataclass(frozen=True)
class Malformed:
    """A skipped record: where it is and why it was skipped."""

    source: str
    index: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}[{self.index}]: {self.reason}"


@dataclass
class Loaded(Generic[T]):
    """What a loader returns: the usable cases, the skipped records, the files read and their kind."""

    kind: str
    cases: list[T]
    malformed: list[Malformed] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    n_records: int = 0


# ---------------------------------------------------------------- kind detection


def detect_kind(records: list[Any]) -> str | None:
    """The format of a list of records, from the fields of its first dict records (None if unknown).

    >>> detect_kind([{"src": "q?", "alt": "a", "answers": ["b"], "loc": "l", "loc_ans": "m", "subject": "s"}])
    'zsre-mend'
    """
    keys: set[str] = set()
    for rec in records[:_SAMPLE]:
        if isinstance(rec, dict):
            keys |= set(rec)
    if not keys:
        return None
    if {"requested_rewrite", "questions"} <= keys:
        return MQUAKE
    if {"src", "alt", "loc"} <= keys:
        return "zsre-mend"
    if {"locality_prompt", "prompt", "target_new"} <= keys:
        return "cf-easyedit"
    if {"text", "labels", "concept"} <= keys:
        return "wikibio"
    if {"prompt", "subject", "target_new", "locality"} <= keys:
        if "rephrase_prompt" in keys:
            return "zsre"
        if "ground_truth" in keys:
            return "counterfact"
        return "recent"
    return None


def _read_json_list(path: Path) -> list[Any] | None:
    """The JSON list in `path`, or None if the file is not a JSON list."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchmarkDataError(f"{path}: not a readable JSON file ({exc})") from None
    return data if isinstance(data, list) else None


def _json_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*.json") if p.is_file())
    raise BenchmarkDataError(f"{path}: no such file or directory")


def _kinds_of(path: Path) -> list[tuple[Path, str | None, list[Any] | None]]:
    out = []
    for f in _json_files(path):
        records = _read_json_list(f)
        out.append((f, detect_kind(records) if records is not None else None, records))
    return out


# ---------------------------------------------------------------- public loaders


def _parse_all(records: list[Any], source: str, build: Callable[[Any, int], T], out: Loaded[T]) -> None:
    out.files.append(source)
    out.n_records += len(records)
    for i, rec in enumerate(records):
        try:
            out.cases.append(build(rec, i))
        except RecordError as exc:
            out.malformed.append(Malformed(source, i, str(exc)))


def load_knowedit(path: str | Path, kind: str | None = None, limit: int | None = None) -> Loaded[EditCase]:
    """Load KnowEdit-style cases from a file or a directory of files (all of one kind).

    With a directory and no `kind`, the directory must hold exactly one KnowEdit-style kind; JSON files
    of no benchmark format (prompt files) are ignored. `limit` keeps the first N usable cases.
    """
    path = Path(path)
    if kind is not None and kind not in KNOWEDIT_KINDS:
        raise BenchmarkDataError(f"unknown kind '{kind}' (known: {', '.join(KNOWEDIT_KINDS)})")
    found = _kinds_of(path)
    if path.is_file():
        f, detected, records = found[0]
        if records is None:
            raise BenchmarkDataError(f"{f}: not a benchmark file (expected a JSON list of records)")
        if detected == MQUAKE:
            raise BenchmarkDataError(
                f"{f} is an MQuAKE file, not KnowEdit-style data: run `bench mquake --data {f}`"
            )
        if detected is None and kind is None:
            raise BenchmarkDataError(
                f"{f}: record fields match no KnowEdit-style format ({', '.join(KNOWEDIT_KINDS)})"
            )
        if kind is not None and detected is not None and detected != kind:
            raise BenchmarkDataError(f"{f} holds '{detected}' records, not '{kind}'")
        chosen = [(f, kind or detected, records)]
    else:
        usable = [(f, k, r) for f, k, r in found if k in KNOWEDIT_KINDS]
        kinds = sorted({k for _, k, _ in usable})
        if kind is not None:
            usable = [(f, k, r) for f, k, r in usable if k == kind]
        elif len(kinds) > 1:
            listing = "; ".join(f"{f.relative_to(path)}: {k}" for f, k, _ in usable)
            raise BenchmarkDataError(f"{path} holds several kinds ({listing}); pick one with --kind")
        if not usable:
            mq = [f for f, k, _ in found if k == MQUAKE]
            hint = f" (it holds MQuAKE data: run `bench mquake --data {mq[0]}`)" if mq else ""
            want = f"'{kind}' " if kind else "KnowEdit-style "
            raise BenchmarkDataError(f"{path}: no {want}files found{hint}")
        chosen = usable
    out: Loaded[EditCase] = Loaded(kind=str(chosen[0][1]), cases=[])
    for f, k, records in chosen:
        assert records is not None and k is not None
        src, name = str(f), f.name
        _parse_all(
            records,
            src,
            lambda rec, i, k=k, src=src, name=name: edit_case(k, rec, f"{name}#{i}", src, i),
            out,
        )
    if limit is not None:
        out.cases = out.cases[:limit]
    if not out.cases:
        raise BenchmarkDataError(f"{path}: no usable records ({len(out.malformed)} malformed)")
    return out


def load_mquake(path: str | Path, limit: int | None = None) -> Loaded[MQuAKECase]:
    """Load MQuAKE cases from a file, or from the MQuAKE files of a directory.

    >>> from kedit.paths import require_data_dir
    >>> cases = load_mquake(require_data_dir() / "MQuAKE").cases   # doctest: +SKIP
    >>> cases[0].new_answer                                           # doctest: +SKIP
    'Kolinda Grabar-Kitarović'
    """
    path = Path(path)
    found = _kinds_of(path)
    if path.is_file():
        f, detected, records = found[0]
        if records is None or detected != MQUAKE:
            what = f"KnowEdit-style '{detected}' data" if detected else "not MQuAKE data"
            hint = f": run `bench knowedit --data {f}`" if detected else ""
            raise BenchmarkDataError(f"{f} is {what}{hint}")
        chosen = [(f, records)]
    else:
        chosen = [(f, r) for f, k, r in found if k == MQUAKE]
        if not chosen:
            raise BenchmarkDataError(f"{path}: no MQuAKE files found")
    out: Loaded[MQuAKECase] = Loaded(kind=MQUAKE, cases=[])
    for f, records in chosen:
        assert records is not None
        _parse_all(records, str(f), lambda rec, i, f=f: mquake_case(rec, str(f), i), out)
    ids = [c.case_id for c in out.cases]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        kept = []
        for c in out.cases:
            if c.case_id in seen:
                out.malformed.append(Malformed(c.source, c.index, f"duplicate case_id {c.case_id}"))
            else:
                seen.add(c.case_id)
                kept.append(c)
        out.cases = kept
    if limit is not None:
        out.cases = out.cases[:limit]
    if not out.cases:
        raise BenchmarkDataError(f"{path}: no usable MQuAKE records ({len(out.malformed)} malformed)")
    return out
