"""MQuAKE runner: apply the edits of k cases together, then probe each of those cases.

Protocol (princeton-nlp/MQuAKE README; MQuAKE-Remastered):
- cases are taken in file order in batches of k (1, 100, or all of the cases run); the batch's requested
  edits (duplicates once) are applied together, probed, and undone before the next batch;
- edit-wise: each requested edit's cloze (`prompt.format(subject)`, no in-context demos) is completed
  greedily; recalled if the continuation starts with target_new or an alias of that hop;
- hops of the new chain: an edited hop is probed by its cloze as above; an unedited hop by its question
  with the relation's 8-shot prompt (`rel-prompts.json`), answer = text up to the newline, exact match
  (case-insensitive) with the answer or an alias. `edited_hop_recall` / `unedited_hop_recall` pool these;
  `instance_wise` = every hop of the chain recalled;
- multi-hop: each question is asked with the official few-shot prompt (standard, or CoT with `cot=True`)
  through `Method.answer_multihop`; a case is correct as soon as one of its 3 questions gives new_answer
  or an alias (case-insensitive exact match).
- a case is `conflicted` when another edit of its batch rewrites a (subject, relation) of its new chain
  to another object (MQuAKE-Remastered's contamination); `multi_hop_unconflicted` leaves those out.

>>> summary = run_mquake(method, load_mquake(path), RunDir(out, spec), MQuAKESettings("100"), load_mquake_prompts())  # doctest: +SKIP
>>> sorted(summary["metrics"])[:3]                                                                               # doctest: +SKIP
['edit_wise', 'edited_hop_recall', 'instance_wise']
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console

from benchmarks.data.cases import FactEdit, Hop, MQuAKECase
from benchmarks.data.loaders import BenchmarkDataError, Loaded
from benchmarks.data.prompts import MQuAKEPrompts
from benchmarks.methods.base import Applied, Method
from benchmarks.runners.mquake_records import StageTimes, case_record, check_prompts, write_summary
from benchmarks.runners.runs import RunDir, progress_bar
from benchmarks.runners.shards import Shard
from benchmarks.scoring.metrics import answer_matches, cloze_recalled, first_line_answer


def answer_budget(tokenizer, candidates: tuple[str, ...]) -> int:
    """New tokens enough to state any candidate answer: twice its longest tokenisation (case and
    context change the split) plus 2. Past that, a continuation cannot equal a candidate (exact match)
    nor begin with it (cloze), so generating further cannot change the verdict."""
    longest = max(len(tokenizer(" " + c, add_special_tokens=False)["input_ids"]) for c in candidates if c)
    return 2 * longest + 2


@dataclass(frozen=True)
class MQuAKESettings:
    """Run settings recorded in `run.json` / `summary.json`."""

    edits_per_batch: str  # "1", "100", "all" or any positive integer
    cot: bool = False
    limit: int | None = None
    # score only the first M cases of each batch (its edits still come from all k cases): lets a slow
    # method (MeLLo, 30-120 s a case) be measured at k = 100 in bounded time
    probe_per_batch: int | None = None

    def __post_init__(self) -> None:
        self.batch_size(1)  # a malformed --edits-per-batch fails here, before any data is looked for
        if self.probe_per_batch is not None and self.probe_per_batch < 1:
            raise BenchmarkDataError(
                f"--probe-per-batch must be a positive integer, not {self.probe_per_batch}"
            )

    def spec(self) -> dict[str, Any]:
        """The settings that define the run (`probe_per_batch` only when set, so older runs still resume)."""
        out = asdict(self)
        if out["probe_per_batch"] is None:
            del out["probe_per_batch"]
        return out

    def probed(self, batch: list[MQuAKECase]) -> list[MQuAKECase]:
        """The cases of `batch` that are probed and scored."""
        return batch if self.probe_per_batch is None else batch[: self.probe_per_batch]

    def batch_size(self, n_cases: int) -> int:
        if self.edits_per_batch == "all":
            return max(1, n_cases)
        try:
            k = int(self.edits_per_batch)
        except ValueError:
            k = 0
        if k < 1:
            raise BenchmarkDataError(
                f"--edits-per-batch must be a positive integer or 'all', not '{self.edits_per_batch}'"
            )
        return k


def batches(cases: list[MQuAKECase], k: int) -> list[list[MQuAKECase]]:
    """Consecutive batches of k cases (the last may be shorter)."""
    return [cases[i : i + k] for i in range(0, len(cases), k)]


def batch_facts(batch: list[MQuAKECase]) -> tuple[list[FactEdit], set[str]]:
    """The batch's distinct facts to write, and the ids of cases whose new chain another edit contradicts."""
    facts: list[FactEdit] = []
    for case in batch:
        for f in case.facts:
            if f not in facts:
                facts.append(f)
    edits = {(s, r, o) for case in batch for (s, r, o) in case.edit_triples}
    conflicted = {
        case.case_id
        for case in batch
        if any((s, r) == (es, er) and o != eo for (s, r, o) in case.new_triples for (es, er, eo) in edits)
    }
    return facts, conflicted


def _upper(text: str) -> str:
    return text.upper()


def cloze_settled(continuation: str, gold: str, aliases: tuple[str, ...] = ()) -> bool:
    """Whether `cloze_recalled` of every continuation of `continuation` is already decided: a candidate
    is followed by a non-word character (recalled, whatever follows), or no candidate can still be
    reached (not recalled). A newline ends the probe (its stop string). Exact: used to stop generating
    once more tokens cannot change the verdict.

    >>> cloze_settled(" Croatia,", "Croatia"), cloze_settled(" Croatia", "Croatia"), cloze_settled(" Paris", "Croatia")
    (True, False, True)
    """
    if "\n" in continuation:
        return True
    text = _upper(continuation.lstrip())
    if "\ufffd" in text or not text:
        return False  # an incomplete character: wait for the next token
    for candidate in (gold, *aliases):
        c = _upper(candidate.strip())
        if not c:
            continue
        if c.startswith(text):
            return False  # may still become this candidate
        if text.startswith(c) and not re.match(r"\w", text[len(c)]):
            return True  # recalled, whatever follows
    return True  # no candidate can be reached any more


def line_settled(continuation: str, gold: str, aliases: tuple[str, ...] = ()) -> bool:
    """Whether the exact-match verdict of the first answer line is decided: the line ended (newline),
    or its text so far is no prefix of any candidate (it can never equal one). Exact, as above.

    >>> line_settled(" Croat", "Croatia"), line_settled(" Paris", "Croatia"), line_settled(" Croatia\n", "Croatia")
    (False, True, True)
    """
    if "\n" in continuation:
        return True
    text = _upper(continuation.strip())
    if "\ufffd" in text or not text:
        return False
    return not any(_upper(c.strip()).startswith(text) for c in (gold, *aliases) if c.strip())


@dataclass
class _Probe:
    kind: str  # "cloze" | "question"
    prompt: str  # what the probe asks (cloze, or the hop question)
    query: str  # the text given to the model
    answer: str
    aliases: tuple[str, ...]
    budget: int
    output: str = ""
    recalled: bool = False

    @property
    def key(self) -> tuple:
        return (self.kind, self.query, self.answer, self.aliases, self.budget)

    def settled(self, text: str) -> bool:
        check = cloze_settled if self.kind == "cloze" else line_settled
        return check(text, self.answer, self.aliases)

    def read(self, text: str) -> None:
        if self.kind == "cloze":
            self.output, self.recalled = text, cloze_recalled(text, self.answer, self.aliases)
        else:
            self.output = first_line_answer(text)
            self.recalled = answer_matches(self.output, self.answer, self.aliases)

    def to_dict(self) -> dict[str, Any]:
        return {"probe": self.kind, "prompt": self.prompt, "output": self.output, "recalled": self.recalled}


class _Prober:
    """The probes of a batch of cases, run together: every single-hop probe of the batch in one batched
    greedy call (a probe asked by several cases is generated once: same weights, same prompt), then
    the multi-hop questions in up to 3 rounds (round j asks question j of the cases not yet right).

    Each probe's generation stops at its budget, its stop string, or as soon as its verdict is settled
    (`cloze_settled` / `line_settled`: further tokens cannot change it), so the metrics are those of
    the full generations; the recorded `output` is the text generated until then."""

    def __init__(self, method: Method, prompts: MQuAKEPrompts, cot: bool) -> None:
        self.method, self.prompts, self.cot = method, prompts, cot

    def budget(self, answer: str, aliases: tuple[str, ...]) -> int:
        return answer_budget(self.method.bundle.tokenizer, (answer, *aliases))

    def _cloze(self, cloze: str, answer: str, aliases: tuple[str, ...]) -> _Probe:
        return _Probe("cloze", cloze, cloze, answer, aliases, self.budget(answer, aliases))

    def _question(self, hop: Hop) -> _Probe:
        query = self.prompts.relation_query(hop.relation_id, hop.question)
        return _Probe(
            "question", hop.question, query, hop.answer, hop.aliases, self.budget(hop.answer, hop.aliases)
        )

    def single_hops(self, cases: list[MQuAKECase]) -> list[tuple[list[_Probe], list[tuple[Hop, _Probe]]]]:
        plans = []
        for case in cases:
            edits = []
            for rw in case.requested_rewrite:
                hop = next((h for h in case.new_single_hops if h.edited and h.answer == rw.target_new), None)
                edits.append(self._cloze(rw.cloze, rw.target_new, hop.aliases if hop else ()))
            hops = [
                (h, self._cloze(h.cloze, h.answer, h.aliases) if h.edited else self._question(h))
                for h in case.new_single_hops
            ]
            plans.append((edits, hops))
        unique: dict[tuple, _Probe] = {}
        for edits, hops in plans:
            for probe in [*edits, *(p for _, p in hops)]:
                unique.setdefault(probe.key, probe)
        todo = list(unique.values())
        texts = self.method.generate_lines(
            [p.query for p in todo], [p.budget for p in todo], [p.settled for p in todo]
        )
        for probe, text in zip(todo, texts):
            probe.read(text)
        for edits, hops in plans:
            for probe in [*edits, *(p for _, p in hops)]:
                done = unique[probe.key]
                probe.output, probe.recalled = done.output, done.recalled
        return plans

    def multi_hop(self, cases: list[MQuAKECase]) -> list[tuple[bool, list[dict[str, Any]]]]:
        if getattr(self.method, "asks_all_questions", False):
            return self._multi_hop_at_once(cases)
        results: list[tuple[bool, list[dict[str, Any]]]] = [(False, []) for _ in cases]
        for j in range(max((len(c.questions) for c in cases), default=0)):
            ask = [i for i, c in enumerate(cases) if not results[i][0] and j < len(c.questions)]
            if not ask:
                break
            golds = [(cases[i].new_answer, cases[i].new_answer_alias) for i in ask]
            got = self.method.answer_multihop_many(
                [cases[i].questions[j] for i in ask],
                self.prompts,
                cot=self.cot,
                max_new_tokens=[self.budget(a, al) for a, al in golds],
                stop_when=[lambda t, a=a, al=al: line_settled(t, a, al) for a, al in golds],
            )
            for i, (gold, aliases), ans in zip(ask, golds, got):
                ok = answer_matches(ans.answer, gold, aliases)
                results[i][1].append(
                    {"question": cases[i].questions[j], "answer": ans.answer, "raw": ans.raw, "correct": ok}
                )
                if ok:  # MQuAKE: a case counts if any of its questions is answered right
                    results[i] = (True, results[i][1])
        return results

    def _multi_hop_at_once(self, cases: list[MQuAKECase]) -> list[tuple[bool, list[dict[str, Any]]]]:
        """Every question of every case in one call (for a method whose answers do not depend on the
        gold: the layer), then read case by case as the rounds would: questions in order, up to the
        first one answered right (later answers are not recorded, as if never asked)."""
        asked = [(i, q) for i, c in enumerate(cases) for q in c.questions]
        got = self.method.answer_multihop_many([q for _, q in asked], self.prompts, cot=self.cot)
        results: list[tuple[bool, list[dict[str, Any]]]] = [(False, []) for _ in cases]
        for (i, question), ans in zip(asked, got):
            if results[i][0]:
                continue
            ok = answer_matches(ans.answer, cases[i].new_answer, cases[i].new_answer_alias)
            results[i][1].append({"question": question, "answer": ans.answer, "raw": ans.raw, "correct": ok})
            if ok:
                results[i] = (True, results[i][1])
        return results

    def cases(
        self, cases: list[MQuAKECase], conflicted: set[str]
    ) -> tuple[list[tuple[dict, dict]], dict[str, float]]:
        """(metrics, outputs) per case, and the seconds (wall and process CPU) of each stage."""
        w0, c0 = time.perf_counter(), time.process_time()
        plans = self.single_hops(cases)
        w1, c1 = time.perf_counter(), time.process_time()
        multi = self.multi_hop(cases)
        w2, c2 = time.perf_counter(), time.process_time()
        out = []
        for case, (edits, hops), (correct, answers) in zip(cases, plans, multi):
            hop_probes = [
                {"edited": h.edited, "relation": h.relation_id, "answer": h.answer, **p.to_dict()}
                for h, p in hops
            ]
            out.append(
                (
                    {
                        "edit_recalled": [p.recalled for p in edits],
                        "hops": [{"edited": h["edited"], "recalled": h["recalled"]} for h in hop_probes],
                        "multi_hop": correct,
                        "conflicted": case.case_id in conflicted,
                    },
                    {
                        "edit_probes": [p.to_dict() for p in edits],
                        "hop_probes": hop_probes,
                        "multi_hop_answers": answers,
                    },
                )
            )
        stages = {
            "single_hop_s": w1 - w0,
            "single_hop_cpu_s": c1 - c0,
            "multi_hop_s": w2 - w1,
            "multi_hop_cpu_s": c2 - c1,
        }
        return out, stages


def run_mquake(
    method: Method,
    loaded: Loaded[MQuAKECase],
    run: RunDir,
    settings: MQuAKESettings,
    prompts: MQuAKEPrompts,
    console: Console | None = None,
    shard: Shard | None = None,
) -> dict[str, Any]:
    """Run (or resume) MQuAKE over `loaded.cases` (only the `shard`'s slice of the batches, if given: batch
    numbers stay those of the whole run); returns the summary written to `run`."""
    cases = loaded.cases
    check_prompts(cases, prompts)
    k = settings.batch_size(len(cases))
    numbered = list(enumerate(batches(cases, k)))
    if shard is not None:
        numbered = shard.select(numbered)
    all_batches = [batch for _, batch in numbered]
    scored = [c for batch in all_batches for c in settings.probed(batch)]
    prober = _Prober(method, prompts, settings.cot)
    done = sum(1 for c in scored if c.case_id in run.finished)
    complete = False
    stages = StageTimes()
    add = stages.add
    try:
        with progress_bar(
            f"mquake k={settings.edits_per_batch} · {method.name}", len(scored), done, console
        ) as advance:
            for b, batch in numbered:
                todo = [c for c in settings.probed(batch) if c.case_id not in run.finished]
                if not todo:
                    continue
                facts, conflicted = batch_facts(batch)
                w0, c0 = time.perf_counter(), time.process_time()
                applied: Applied = method.apply(facts)
                add("apply", time.perf_counter() - w0, time.process_time() - c0)
                try:
                    # a slow method probes (and records) the batch a few cases at a time, so that a long
                    # batch resumes where it stopped rather than from its first case
                    for chunk in batches(todo, method.record_every or len(todo)):
                        w0 = time.perf_counter()
                        results, probe_stages = prober.cases(chunk, conflicted)
                        for name in ("single_hop", "multi_hop"):
                            add(name, probe_stages[f"{name}_s"], probe_stages[f"{name}_cpu_s"])
                        per_case = (time.perf_counter() - w0) / len(chunk)
                        for case, (metrics, outputs) in zip(chunk, results):
                            run.record(case_record(case, b, len(facts), applied, outputs, metrics, per_case))
                            advance()
                finally:
                    w0, c0 = time.perf_counter(), time.process_time()
                    method.undo(applied)
                    add("undo", time.perf_counter() - w0, time.process_time() - c0)
        complete = True
    finally:
        summary = write_summary(
            run,
            method,
            loaded,
            scored,
            k,
            len(all_batches),
            sum(len(b) for b in all_batches),
            stages,
            complete,
        )
        if console is not None and stages:
            console.print(
                "stages (wall s / process CPU s): "
                + ", ".join(
                    f"{n[:-2]} {stages[n]:.1f}/{stages[n[:-2] + '_cpu_s']:.1f}"
                    for n in stages
                    if not n.endswith("_cpu_s")
                )
            )
    return summary
