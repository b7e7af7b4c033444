"""The batched KnowEdit harness: the legacy protocol (`benchmarks.runners.knowedit`), with the work that does not
depend on an edit shared out.

- pre-edit scores: read from the `PreScoreCache` (model + record hash + probe), the missing ones scored for
  a whole chunk of cases in one `Method.score` call (one forward per 16 probes) and stored;
- each case: apply, score every probe of the case in one call, keep a copy of the changed weights
  (`Method.row_weights`), undo;
- fluency: the chunk's samples decoded together with the KV cache, row i with case i's edited weights
  and its fluency request (`Method.fluency_request`, taken while the edit was live: a store method frames
  the prompt with the facts it retrieved) (`benchmarks.scoring.generation.sample_requests`); each row draws
  from its own seeded generator, so the texts are the legacy ones. A method whose edited weights the
  batched sampler cannot give one row alone is sampled case by case.
- sequential runs: every case's pre-edit scores (cached), all edits, then every case scored and sampled on
  the final model in batches.

A chunk's cases are recorded when its samples are done: an interrupt loses at most one chunk.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from benchmarks.data.cases import EditCase
from benchmarks.methods.base import Applied, Method
from benchmarks.runners.knowedit_probes import KnowEditSettings, Probe, Stages, case_probes, case_record
from benchmarks.runners.pre_cache import PreScoreCache, model_key, record_hash
from benchmarks.runners.runs import RunDir, progress_bar
from benchmarks.scoring.generation import FluencyRequest, overridable, sample_requests
from kedit.scoring import TargetScore

CHUNK = 16  # cases whose fluency samples are decoded together


def _key(probes: list[Probe]) -> str:
    return record_hash([(p.section, p.key, p.prompt, p.target) for p in probes])


def _score_many(method: Method, probe_lists: Sequence[list[Probe]]) -> list[list[TargetScore]]:
    """Every probe of every case through one `Method.score` call, split back per case."""
    flat = [p for probes in probe_lists for p in probes]
    scores = method.score([p.prompt for p in flat], [p.target for p in flat]) if flat else []
    out, i = [], 0
    for probes in probe_lists:
        out.append(scores[i : i + len(probes)])
        i += len(probes)
    return out


class PreScores:
    """Pre-edit scores of cases on the unedited model: cached, the missing ones scored together."""

    def __init__(self, method: Method, cache: PreScoreCache | None) -> None:
        self.method = method
        self.cache = cache
        self.model = model_key(method.bundle) if cache is not None else ""
        self.hits = self.misses = 0

    def of(self, cases: Sequence[EditCase]) -> dict[str, tuple[list[Probe], list[TargetScore]]]:
        out: dict[str, tuple[list[Probe], list[TargetScore]]] = {}
        missing: list[tuple[EditCase, list[Probe]]] = []
        for case in cases:
            probes = case_probes(case)
            got = self.cache.get(self.model, _key(probes), len(probes)) if self.cache is not None else None
            if got is None:
                missing.append((case, probes))
            else:
                out[case.case_id] = (probes, got)
        self.hits += len(out)
        self.misses += len(missing)
        for (case, probes), scores in zip(missing, _score_many(self.method, [p for _, p in missing])):
            out[case.case_id] = (probes, scores)
            if self.cache is not None:
                self.cache.put(self.model, _key(probes), scores)
        return out


def _batched_texts(
    method: Method,
    settings: KnowEditSettings,
    cases: Sequence[EditCase],
    weights: Sequence[dict[str, Any]],
    requests: Sequence[FluencyRequest] | None = None,
) -> list[str]:
    """Fluency texts of `cases` decoded together, case i with its edited weights `weights[i]` and, when
    given, its `requests[i]` (taken while its edit was live); else each case's prompt alone."""
    requests = requests if requests is not None else [FluencyRequest(c.prompt) for c in cases]
    texts: list[str] = []
    for start in range(0, len(cases), CHUNK):
        rows = range(start, min(start + CHUNK, len(cases)))
        texts += sample_requests(
            method.bundle,
            [requests[i] for i in rows],
            [settings.seed + cases[i].index for i in rows],
            per_row=[weights[i] for i in rows],
        )
    return texts


def run_batched(
    method: Method,
    cases: list[EditCase],
    pending: list[EditCase],
    run: RunDir,
    settings: KnowEditSettings,
    stages: Stages,
    cache: PreScoreCache | None,
    console: Console | None,
) -> dict[str, int]:
    """Score `pending` (of `cases`) with the batched harness, recording each case in `run`; returns how
    many cases' pre-edit scores the cache held (`hits`) and how many were scored (`misses`)."""
    if not pending:
        return {"hits": 0, "misses": 0}
    pre_scores = PreScores(method, cache)
    if settings.sequential:
        _sequential(method, cases, pending, run, settings, stages, pre_scores, console)
        return {"hits": pre_scores.hits, "misses": pre_scores.misses}
    tok = method.bundle.tokenizer
    with progress_bar(
        f"knowedit {settings.kind} · {method.name}", len(cases), len(cases) - len(pending), console
    ) as advance:
        for start in range(0, len(pending), CHUNK):
            chunk = pending[start : start + CHUNK]
            t = time.perf_counter()
            pre = pre_scores.of(chunk)
            stages.add("pre", t)
            done = [_edit_and_score(method, settings, stages, case, pre[case.case_id][0]) for case in chunk]
            t0 = time.perf_counter()
            later = [(i, d[2]) for i, d in enumerate(done) if d[2] is not None]
            texts = _batched_texts(
                method,
                settings,
                [chunk[i] for i, _ in later],
                [weights for _, (weights, _) in later],
                [request for _, (_, request) in later],
            )
            share = (stages.add("fluency", t0) - t0) / max(1, len(later))
            for (i, _), text in zip(later, texts):
                done[i] = (done[i][0], done[i][1], None, text, done[i][4] + share)
            for case, (applied, post, _, text, seconds) in zip(chunk, done):
                probes, pre_case = pre[case.case_id]
                run.record(case_record(case, probes, pre_case, post, text, applied, seconds, tok))
                advance()
    return {"hits": pre_scores.hits, "misses": pre_scores.misses}


def _edit_and_score(
    method: Method, settings: KnowEditSettings, stages: Stages, case: EditCase, probes: list[Probe]
) -> tuple[Applied, list[TargetScore], tuple[dict[str, Any], FluencyRequest] | None, str | None, float]:
    """Apply the case's edit, score its probes, keep what its fluency sample needs, undo. Returns
    (applied, post scores, (edited weights, fluency request) to sample with later or None, text sampled
    now or None, seconds). The request is taken while the edit is live: a store method's context is
    what its store retrieves then."""
    t0 = time.perf_counter()
    applied = method.apply([case.fact])
    t1 = stages.add("edit", t0)
    try:
        post = _score_many(method, [probes])[0]
        t2 = stages.add("score", t1)
        later, text = None, None
        if settings.fluency:
            own = method.row_weights(applied)
            if own is not None and overridable(method.bundle.model, own):
                later = (own, method.fluency_request(case.prompt))
            else:  # a change the batched sampler cannot give one row alone: sample now, edit live
                text = method.sample(case.prompt, seed=settings.seed + case.index)
        t3 = stages.add("fluency", t2)
    finally:
        t4 = time.perf_counter()
        method.undo(applied)
        stages.add("undo", t4)
    return applied, post, later, text, t3 - t1


def _sequential(
    method: Method,
    cases: list[EditCase],
    pending: list[EditCase],
    run: RunDir,
    settings: KnowEditSettings,
    stages: Stages,
    pre_scores: PreScores,
    console: Console | None,
) -> None:
    """EasyEdit sequential editing (see `benchmarks.runners.knowedit`): every edit, then every pending case scored
    and sampled on the final model; a resumed run re-applies every edit."""
    t = time.perf_counter()
    pre = pre_scores.of(pending)
    stages.add("pre", t)
    tok = method.bundle.tokenizer
    applied: list[Applied] = []
    try:
        with progress_bar(f"sequential edits · {method.name}", len(cases), 0, console) as advance:
            for case in cases:
                t = time.perf_counter()
                applied.append(method.apply([case.fact]))
                stages.add("edit", t)
                advance()
        by_id = {c.case_id: a for c, a in zip(cases, applied)}
        with progress_bar("evaluate", len(cases), len(cases) - len(pending), console) as advance:
            for start in range(0, len(pending), CHUNK):
                chunk = pending[start : start + CHUNK]
                t = time.perf_counter()
                posts = _score_many(method, [pre[c.case_id][0] for c in chunk])
                t = stages.add("score", t)
                texts: list[str | None] = [None] * len(chunk)
                if settings.fluency and method.plain_sampler:  # one model for every case: plain batching
                    texts = list(_batched_texts(method, settings, chunk, [{} for _ in chunk]))
                elif settings.fluency:
                    texts = [method.sample(c.prompt, seed=settings.seed + c.index) for c in chunk]
                share = (stages.add("fluency", t) - t) / len(chunk)
                for case, post, text in zip(chunk, posts, texts):
                    probes, pre_case = pre[case.case_id]
                    run.record(
                        case_record(case, probes, pre_case, post, text, by_id[case.case_id], share, tok)
                    )
                    advance()
    finally:
        t = time.perf_counter()
        for a in reversed(applied):
            method.undo(a)
        stages.add("undo", t)
