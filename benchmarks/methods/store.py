"""Method adapters over a kedit knowledge store: the shared `StoreBacked` base and `rag` (store only);
`mello` (MeLLo loop, `benchmarks.methods.mello`) and `layer` (kedit's router, weights and store, answers
from `KnowledgeLayer.query`, `benchmarks.methods.layer`) build on it.

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
>>> applied = m.apply([FactEdit("{} is a citizen of", "Ellie Kemper", "Croatia", "P27")])   # doctest: +SKIP
>>> m.generate("Ellie Kemper is a citizen of", 4)          # doctest: +SKIP
' Croatia'
>>> m.undo(applied); m.close()                               # doctest: +SKIP
"""

from __future__ import annotations

import itertools
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

from benchmarks.data.cases import FactEdit
from benchmarks.methods.base import Applied, Method
from benchmarks.scoring.generation import FluencyRequest, greedy_generate, sample_ids_like_easyedit
from kedit.errors import KeditError
from kedit.scoring import TargetScore, score_targets

log = logging.getLogger(__name__)

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
class Written:
    """What one `apply` put into the store (to take back on undo)."""

    tag: str
    fact_ids: list[int] = field(default_factory=list)
    ledger_ids: list[str] = field(default_factory=list)  # KnowledgeLayer ledger entries (undo via kl.undo)
    results: list[Any] = field(default_factory=list)  # EditResult of `layer`
    skipped: list[FactEdit] = field(default_factory=list)  # contradictory items left out of a batch


class StoreBacked(Method):
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
        self._live: list[Written] = []

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

    def _erase(self, written: Written) -> None:
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

    def generate_lines(
        self,
        prompts: Sequence[str],
        max_new_tokens: Sequence[int],
        stop_when: Sequence[Callable[[str], bool] | None] | None = None,
    ) -> list[str]:
        return super().generate_lines([self.with_context(p) for p in prompts], max_new_tokens, stop_when)

    def fluency_request(self, prompt: str) -> FluencyRequest:
        """EasyEdit's fluency text of `prompt` with the retrieved facts in context: the framed prompt is
        sampled to 100 tokens counted from `prompt`, and the text is `prompt` and the continuation."""
        ctx = self._context(prompt)
        if not ctx:
            return super().fluency_request(prompt)
        tok = self.bundle.tokenizer
        framed = f"{ctx}Prompt: {prompt}"
        n_framed = len(tok(framed)["input_ids"])
        n_prompt = len(tok(prompt)["input_ids"])
        return FluencyRequest(framed, n_framed + max(0, 100 - n_prompt), keep_from=n_framed, head=prompt)

    def sample(self, prompt: str, seed: int) -> str:
        """EasyEdit's fluency text of `prompt` (prompt + continuation, 100 tokens with the prompt), the
        continuation sampled with the retrieved facts in context (`fluency_request`)."""
        request = self.fluency_request(prompt)
        if not request.head:
            return super().sample(prompt, seed)
        ids = sample_ids_like_easyedit(self.bundle, request.text, max_out_len=request.max_out_len, seed=seed)
        text = request.head + self.bundle.tokenizer.decode(ids[request.keep_from :], skip_special_tokens=True)
        return unicodedata.normalize("NFKD", text).replace("\n\n", " ").replace("<|endoftext|>", "")

    def row_weights(self, applied: Applied) -> dict[str, Any] | None:
        """Copies of the matrices the knowledge base's live weight changes hold (none for a store-only
        method), as they are now: its fluency samples are then decoded in batches like an editor's."""
        model = self.bundle.model
        names = sorted({name for change in self.kl.weights.changes for name in change.names})
        return {name: model.get_parameter(name).detach().clone() for name in names}


class RagMethod(StoreBacked):
    """Store only, no weight change: each fact goes into the store (a graph fact when its relation is
    known, else a passage) and every question is asked with the top retrieved facts in context."""

    name = "rag"

    def _write(self, facts: Sequence[FactEdit], written: Written) -> None:
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
            stored = self.kl.store.add_facts(
                [
                    dict(
                        subject=f.subject,
                        relation=f.relation,
                        object=f.target,
                        sentence=f.statement,
                        source=written.tag,
                    )
                    for f in structured
                ]
            )
            written.fact_ids += [s.id for s in stored]
        for f in loose:
            # kedit parses the text: a single sentence whose relation it recognises is kept as that fact
            # only; anything else (no relation, or several sentences, e.g. WikiBio) stays a passage
            res = self.kl.insert(text=f"{f.statement}.", source=written.tag)
            written.ledger_ids.append(res.id)
            if len(res.fact_ids) == 1 and not _SENTENCE_BREAK.search(f.statement):
                self._drop_passages(written.tag, res.passage_ids)

    def apply(self, facts: Sequence[FactEdit]) -> Applied:
        t0 = time.perf_counter()
        written = Written(self._new_tag())
        try:
            self._write(facts, written)
        except KeditError as exc:
            self._erase(written)
            return Applied(tuple(facts), None, str(exc), time.perf_counter() - t0)
        self._live.append(written)
        return Applied(tuple(facts), written, None, time.perf_counter() - t0)
