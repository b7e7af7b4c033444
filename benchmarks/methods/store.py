"""Method adapters over a kedit knowledge store: `rag` (store only), `mello` (MeLLo loop) and `layer`
(kedit's router, weights and store, answers from `KnowledgeLayer.query`).

Each adapter owns a `KnowledgeLayer` in a temporary directory on the benchmark's model bundle (shared,
so weight edits of `layer` are what the probes see). Written facts are taken back on `undo`, so a
non-sequential run always starts from an empty store and the unedited weights.

In-context facts (EasyEdit's ICE/IKE style): the top retrieved facts are written before the prompt as
`New Fact: <sentence>` lines. Teacher-forced scores and the fluency sample (KnowEdit) use
`New Fact: ...\\nPrompt: <prompt>` as EasyEdit's ICE does; greedy probes (MQuAKE cloze, relation and
few-shot multi-hop prompts) put the `New Fact:` lines right before the prompt's last line (before the
question, after the few-shot demos; before the whole of a one-line cloze). The retrieval query of
a prompt is its last line without a `Q:`/`A:` frame (the question of a few-shot prompt).

>>> m = RagMethod(bundle)                                   # doctest: +SKIP
>>> applied = m.apply([Fact("{} is a citizen of", "Ellie Kemper", "Croatia", "P27")])   # doctest: +SKIP
>>> m.generate("Ellie Kemper is a citizen of", 4)          # doctest: +SKIP
' Croatia'
>>> m.undo(applied); m.close()                               # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import shutil
import tempfile
import time
import unicodedata
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.cases import Fact
from benchmarks.generation import greedy_generate, sample_ids_like_easyedit
from benchmarks.methods import Applied, Method, MultiHopAnswer
from benchmarks.prompts import MQuAKEPrompts
from kedit.errors import KeditError
from kedit.scoring import TargetScore, score_targets

log = logging.getLogger(__name__)

MELLO_ROUNDS = 4
MELLO_TOKENS_PER_ROUND = 80
MELLO_STOP = ("Retrieved fact:", "\n\nQuestion:")
_FINAL = "Final answer: "
_SUB = "Subquestion: "
_SENTENCE_BREAK = re.compile(r"[.!?;]\s|\n")


def retrieval_query(prompt: str) -> str:
    """The text to retrieve facts for: the prompt's last non-empty line, without a `Q:`/`A:` frame.

    >>> retrieval_query("Q: Who is X? A: Y\\nQ: Which country is Z in? A:")
    'Which country is Z in?'
    >>> retrieval_query("The mother tongue of Danielle Darrieux is")
    'The mother tongue of Danielle Darrieux is'
    """
    lines = [ln.strip() for ln in prompt.strip().split("\n") if ln.strip()]
    line = lines[-1] if lines else prompt.strip()
    for head in ("Prompt:", "Q:", "Question:"):
        if line.startswith(head):
            line = line[len(head) :].strip()
    if line.endswith("A:"):
        line = line[:-2].strip()
    return line or prompt.strip()


def fact_lines(texts: Sequence[str]) -> str:
    """`New Fact: <sentence>` lines (each ends with a full stop and a newline).

    >>> fact_lines(["Ellie Kemper is a citizen of Croatia"])
    'New Fact: Ellie Kemper is a citizen of Croatia.\\n'
    """
    return "".join(f"New Fact: {t.strip().rstrip('.')}.\n" for t in texts)


def _cleanup(layer, directory: str) -> None:
    try:
        layer.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class _Written:
    """What one `apply` put into the store (to take back on undo)."""

    tag: str
    fact_ids: list[int] = field(default_factory=list)
    ledger_ids: list[str] = field(default_factory=list)  # KnowledgeLayer ledger entries (undo via kl.undo)
    results: list[Any] = field(default_factory=list)  # EditResult of `layer`
    skipped: list[Fact] = field(default_factory=list)  # contradictory items left out of a batch


class _StoreBacked(Method):
    """A method with a `KnowledgeLayer` of its own (temporary directory) on the shared bundle."""

    k = 3  # facts prepended to a prompt
    include_superseded = True  # a memory of edits: every written fact is retrievable

    def __init__(self, bundle, *, k: int | None = None, embedder=None) -> None:
        super().__init__(bundle)
        from kedit import KnowledgeLayer

        if k is not None:
            self.k = k
        self._dir = tempfile.mkdtemp(prefix=f"kedit-bench-{self.name}-")
        try:
            self.kl = KnowledgeLayer.open(self._dir, model=bundle, embedder=embedder)
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self._finalizer = weakref.finalize(self, _cleanup, self.kl, self._dir)
        self._tags = itertools.count()
        self._live: list[_Written] = []

    def close(self) -> None:
        self._finalizer()

    def settings(self) -> dict[str, Any]:
        return {"k": self.k}

    # -- store bookkeeping -------------------------------------------------------------------------
    def _new_tag(self) -> str:
        return f"bench-{self.name}-{next(self._tags)}"

    def _passages_of(self, tag: str) -> list[Any]:
        return [p for p in self.kl.store.passages() if p.source == tag and p.deleted_at is None]

    def _drop_passages(self, tag: str, passage_ids: Sequence[int] | None = None) -> None:
        """Delete the documents written under `tag` (only those holding `passage_ids` if given).
        `KnowledgeLayer.undo` tombstones facts but leaves the passages of an insert/edit it takes back,
        so they are removed here."""
        passages = self._passages_of(tag)
        if passage_ids is not None:
            passages = [p for p in passages if p.id in set(passage_ids)]
        for doc in sorted({p.document_id for p in passages}):
            self.kl.store.delete_document(doc)

    def _erase(self, written: _Written) -> None:
        for entry in reversed(written.ledger_ids):
            self.kl.undo(entry)
        for fid in written.fact_ids:
            if not self.kl.store.fact(fid).deleted:
                self.kl.store.delete_fact(fid)
        self._drop_passages(written.tag)

    def undo(self, applied: Applied) -> None:
        written = applied.handle
        if written is None:
            return
        self._erase(written)
        self._live = [w for w in self._live if w is not written]

    # -- context ---------------------------------------------------------------------------------
    def _allowed(self, hit) -> bool:
        """Whether a retrieved hit may be put in context (every live fact, here)."""
        return True

    def retrieve(self, query: str, k: int | None = None) -> list[str]:
        """Sentences of the top `k` retrieved facts/passages for `query` (none when nothing is live)."""
        k = self.k if k is None else k
        if not self._live or k < 1:
            return []
        hits = self.kl.store.search(query, k=4 * k, include_superseded=self.include_superseded)
        return [h.text for h in hits if self._allowed(h)][:k]

    def _context(self, prompt: str) -> str:
        return fact_lines(self.retrieve(retrieval_query(prompt)))

    def score(self, prompts: Sequence[str], targets: Sequence[str]) -> list[TargetScore]:
        framed = []
        for p in prompts:
            ctx = self._context(p)
            framed.append(f"{ctx}Prompt: {p}" if ctx else p)
        return score_targets(self.bundle, framed, list(targets))

    def with_context(self, prompt: str) -> str:
        """`prompt` with its retrieved facts as `New Fact:` lines right before its last line (the question
        of a few-shot prompt, or the whole of a cloze), so few-shot demos stay a shared prefix."""
        ctx = self._context(prompt)
        if not ctx:
            return prompt
        head, sep, last = prompt.rpartition("\n")
        return f"{head}{sep}{ctx}{last}"

    def generate(self, prompt: str, max_new_tokens: int, stop: Sequence[str] = ("\n",)) -> str:
        return greedy_generate(self.bundle, self.with_context(prompt), max_new_tokens, stop)

    def generate_lines(self, prompts: Sequence[str], max_new_tokens: Sequence[int],
                       stop_when: Sequence[Callable[[str], bool] | None] | None = None) -> list[str]:
        return super().generate_lines([self.with_context(p) for p in prompts], max_new_tokens, stop_when)

    def sample(self, prompt: str, seed: int) -> str:
        """EasyEdit's fluency text of `prompt` (prompt + continuation, 100 tokens with the prompt), the
        continuation sampled with the retrieved facts in context."""
        ctx = self._context(prompt)
        if not ctx:
            return super().sample(prompt, seed)
        tok = self.bundle.tokenizer
        framed = f"{ctx}Prompt: {prompt}"
        n_framed = len(tok(framed)["input_ids"])
        n_prompt = len(tok(prompt)["input_ids"])
        ids = sample_ids_like_easyedit(self.bundle, framed, max_out_len=n_framed + max(0, 100 - n_prompt), seed=seed)
        text = prompt + tok.decode(ids[n_framed:], skip_special_tokens=True)
        return unicodedata.normalize("NFKD", text).replace("\n\n", " ").replace("<|endoftext|>", "")


class RagMethod(_StoreBacked):
    """Store only, no weight change: each fact goes into the store (a graph fact when its relation is
    known, else a passage) and every question is asked with the top retrieved facts in context."""

    name = "rag"

    def _write(self, facts: Sequence[Fact], written: _Written) -> None:
        vocab = self.kl.store.relations
        structured, loose = [], []
        for f in facts:
            known = False
            if f.relation:
                try:
                    vocab.resolve(f.relation)
                    known = True
                except LookupError:
                    known = False
            (structured if known else loose).append(f)
        if structured:
            stored = self.kl.store.add_facts([
                dict(subject=f.subject, relation=f.relation, object=f.target, sentence=f.statement,
                     source=written.tag)
                for f in structured
            ])
            written.fact_ids += [s.id for s in stored]
        for f in loose:
            # kedit parses the text: a single sentence whose relation it recognises is kept as that fact
            # only; anything else (no relation, or several sentences, e.g. WikiBio) stays a passage
            res = self.kl.insert(text=f"{f.statement}.", source=written.tag)
            written.ledger_ids.append(res.id)
            if len(res.fact_ids) == 1 and not _SENTENCE_BREAK.search(f.statement):
                self._drop_passages(written.tag, res.passage_ids)

    def apply(self, facts: Sequence[Fact]) -> Applied:
        t0 = time.perf_counter()
        written = _Written(self._new_tag())
        try:
            self._write(facts, written)
        except KeditError as exc:
            self._erase(written)
            return Applied(tuple(facts), None, str(exc), time.perf_counter() - t0)
        self._live.append(written)
        return Applied(tuple(facts), written, None, time.perf_counter() - t0)


class PrefixCachedGreedy:
    """Greedy generation that keeps the KV cache of the last text it saw and reuses it for the longest
    common token prefix of the next prompt (MeLLo's prompts share ~1k tokens of demos and grow by a few
    lines per round). Same tokens as `greedy_generate` on the whole prompt; only the prefill is saved.
    Valid while the weights do not change (MeLLo never edits them)."""

    def __init__(self, bundle) -> None:
        import inspect

        self.bundle = bundle
        forward = inspect.signature(bundle.model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"
        self._ids: list[int] = []  # tokens whose keys/values are in the cache
        self._cache = None

    def __call__(self, prompt: str, max_new_tokens: int, stop: Sequence[str] = ()) -> str:
        import torch
        from transformers import DynamicCache

        from benchmarks.generation import cut_at_stop

        tok, model = self.bundle.tokenizer, self.bundle.model
        ids = tok(prompt)["input_ids"]
        n = 0
        for a, b in zip(self._ids, ids):
            if a != b:
                break
            n += 1
        n = min(n, len(ids) - 1)  # at least one token to feed
        if self._cache is None or n == 0 or self._cache.get_seq_length() != len(self._ids):
            self._cache, n = DynamicCache(), 0
        elif len(self._ids) > n:
            self._cache.crop(n - len(self._ids))  # transformers 5: a negative count of tokens to drop
        fed = ids[:n]
        feed = ids[n:]
        new: list[int] = []
        text = ""
        with torch.no_grad():
            for _ in range(max_new_tokens):
                out = model(input_ids=torch.tensor([feed], device=self.bundle.device), use_cache=True,
                            **{self._cache_arg: self._cache})
                fed += feed
                nxt = int(out.logits[0, -1].argmax())
                if nxt == tok.eos_token_id:
                    break
                new.append(nxt)
                text = tok.decode(new, skip_special_tokens=True)
                if any(s in text for s in stop):
                    break
                feed = [nxt]
        self._ids = fed
        return cut_at_stop(text, stop)


class MeLLoMethod(RagMethod):
    """MeLLo (MQuAKE's memory-based method): the batch's edits are a memory of fact sentences
    (`prompt.format(subject) + " " + target_new`, MiniLM + FAISS through `kl.store.search`); the model
    decomposes the question with MeLLo's 4-demo prompt, and each subquestion retrieves the top-1 fact,
    which the model checks against its own answer (≤ 4 rounds, generation stopped at `Retrieved fact:`).

    Single-hop probes (edit-wise cloze and hop questions) get the top-1 fact in context, as `rag` does.
    Besides MeLLo's stop string, generation also stops at a new demo (`\\n\\nQuestion:`), which only saves
    tokens: after a `Final answer:` line MeLLo stops reading.
    """

    name = "mello"
    k = 1
    record_every = 4  # 30-120 s per case: a batch of 100 is recorded as it goes, so it resumes mid-batch

    def __init__(self, bundle, *, k: int | None = None, embedder=None) -> None:
        super().__init__(bundle, k=k, embedder=embedder)
        self._greedy = PrefixCachedGreedy(bundle)

    def settings(self) -> dict[str, Any]:
        return {"k": self.k, "rounds": MELLO_ROUNDS, "tokens_per_round": MELLO_TOKENS_PER_ROUND}

    def answer_multihop(
        self, question: str, prompts: MQuAKEPrompts, cot: bool = False, max_new_tokens: int = 24
    ) -> MultiHopAnswer:
        start = prompts.mello_query(question)
        prompt = start
        answer = None
        for _ in range(MELLO_ROUNDS):
            gen = self._greedy(prompt, MELLO_TOKENS_PER_ROUND, stop=MELLO_STOP)
            lines = gen.strip().split("\n")
            if lines[-1].startswith(_FINAL):
                answer = lines[-1][len(_FINAL) :].strip()
                prompt += gen
                break
            if len(lines) < 2 or not lines[-2].startswith(_SUB):
                prompt += gen
                break  # MeLLo: a failed case (no subquestion to look up)
            sub = lines[-2][len(_SUB) :].strip()
            found = self.retrieve(sub, k=1)
            if not found:
                prompt += gen
                break
            prompt = prompt + gen + "Retrieved fact: " + found[0].strip().rstrip(".") + "."
        return MultiHopAnswer(answer, prompt[len(start) :])

    def answer_multihop_many(
        self, questions: Sequence[str], prompts: MQuAKEPrompts, cot: bool = False,
        max_new_tokens: Sequence[int] | None = None, stop_when: Sequence[Callable[[str], bool] | None] | None = None,
    ) -> list[MultiHopAnswer]:
        """MeLLo's loop is sequential (each round reads the last): one question at a time."""
        return [self.answer_multihop(q, prompts, cot=cot) for q in questions]


class LayerMethod(_StoreBacked):
    """kedit's own path: facts go through `KnowledgeLayer.edit_many` (the router picks weights, store or
    both per fact), multi-hop questions through `KnowledgeLayer.query` (graph chains + evidence pool).

    Probes that read the model (KnowEdit scores, MQuAKE cloze/hop probes, fluency) see the edited
    weights; a store-only fact is put before a probe only when the probe is in its scope (the scope
    decision `kl.query` uses, `kl.in_scope`), so unrelated probes see the model alone. Contradictory items of one batch (same subject and relation, another target), which
    `edit_many` refuses as a whole, are left out after the first and reported as the batch's edit error.
    """

    name = "layer"
    include_superseded = False  # the store's own view: a newer fact supersedes an older one
    asks_all_questions = True  # its answers do not depend on the gold: the runner may ask all 3 at once

    def __init__(self, bundle, *, route: str | None = None, k: int | None = None, embedder=None) -> None:
        super().__init__(bundle, k=k, embedder=embedder)
        self.route = route
        self._store_only: set[tuple[str, int]] = set()

    def settings(self) -> dict[str, Any]:  # the weight editors too: the layer's defaults may change
        return {"k": self.k, "route": self.route or "router",
                "edit_method": self.kl.edit_method, "batch_method": self.kl.batch_method}

    def _allowed(self, hit) -> bool:
        return (hit.kind, hit.id) in self._store_only

    def _refresh_store_only(self) -> None:
        from kedit import Route

        keep: set[tuple[str, int]] = set()
        for written in self._live:
            for r in written.results:
                if r.route != Route.STORE:
                    continue
                if r.fact_id is not None:
                    keep.add(("fact", r.fact_id))
            keep |= {("passage", p.id) for p in self._passages_of(written.tag)}
        self._store_only = keep

    def retrieve(self, query: str, k: int | None = None) -> list[str]:
        """The sentences of the store-only facts `query` is in scope of (kl.in_scope: the decision
        `kl.query` makes), never the top-k nearest facts: an unrelated prompt gets no context."""
        if not self._store_only:
            return []
        k = self.k if k is None else k
        found = [c.fact for c in self.kl.in_scope(query).in_scope if ("fact", c.fact.id) in self._store_only]
        return [f.sentence for f in found][:k]

    def apply(self, facts: Sequence[Fact]) -> Applied:
        t0 = time.perf_counter()
        written = _Written(self._new_tag())
        items, seen = [], {}
        for f in facts:
            key = (f.subject.casefold(), f.relation or f.prompt)
            if key in seen and seen[key] != f.target.casefold():
                written.skipped.append(f)
                continue
            seen[key] = f.target.casefold()
            items.append(dict(prompt=f.prompt, target=f.target, subject=f.subject, relation=f.relation))
        try:
            written.results = self.kl.edit_many(items, route=self.route, source=written.tag)
        except KeditError as exc:
            self._drop_passages(written.tag)
            return Applied(tuple(facts), None, str(exc), time.perf_counter() - t0)
        written.ledger_ids = [r.id for r in written.results]
        self._live.append(written)
        self._refresh_store_only()
        error = None
        if written.skipped:
            error = f"{len(written.skipped)} contradictory item(s) left out of the batch: " + "; ".join(
                f"{f.statement}" for f in written.skipped[:5]
            )
        routes = [r.route.value for r in written.results]
        info = {"routes": {r: routes.count(r) for r in sorted(set(routes))},
                "weight_edit": next((r.edit_id for r in written.results if r.edit_id), None)}
        if len(written.results) == 1:
            info["reasons"] = list(written.results[0].reasons)
        return Applied(tuple(facts), written, error, time.perf_counter() - t0, info)

    def undo(self, applied: Applied) -> None:
        super().undo(applied)
        self._refresh_store_only()

    def routes(self, applied: Applied) -> list[str]:
        """The route the router chose for each item written by `applied`."""
        written = applied.handle
        return [r.route.value for r in written.results] if written is not None else []

    def answer_multihop(
        self, question: str, prompts: MQuAKEPrompts, cot: bool = False, max_new_tokens: int = 24
    ) -> MultiHopAnswer:
        return self._multihop(self.kl.query(question))

    @staticmethod
    def _multihop(ans) -> MultiHopAnswer:
        trace = ans.trace
        raw = json.dumps({
            "mode": trace.get("mode"),
            "hops": [[h["subject"], h["relation"], h["answer"], h["tier"]] for h in trace.get("hops", [])],
            "generated": trace.get("generated"),
        }, ensure_ascii=False)
        return MultiHopAnswer(ans.text, raw)

    def answer_multihop_many(
        self, questions: Sequence[str], prompts: MQuAKEPrompts, cot: bool = False,
        max_new_tokens: Sequence[int] | None = None, stop_when: Sequence[Callable[[str], bool] | None] | None = None,
    ) -> list[MultiHopAnswer]:
        """`KnowledgeLayer.query_many`: the same answers as `query` one by one, the model's work batched.
        The gold-dependent `stop_when` is not used: the layer answers as it would for a user."""
        return [self._multihop(ans) for ans in self.kl.query_many(list(questions))]
