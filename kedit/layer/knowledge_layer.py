"""`KnowledgeLayer`: the facade over the layer's verbs (edit, insert, forget, undo, query); each verb's
work lives in its own module of this package."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kedit.answers import clean_answer
from kedit.errors import EditError, ModelNotFoundError, StoreError
from kedit.forgetting import ForgetReport
from kedit.layer import edit as edit_plan
from kedit.layer import ledger
from kedit.layer.closed_book import ClosedBookView, store_backed_edits
from kedit.layer.insert import insert as insert_text
from kedit.layer.results import EditResult, InsertResult
from kedit.probes import locality_drift, probe_scores
from kedit.router import Route, Router
from kedit.weights import WeightStack

log = logging.getLogger(__name__)


class KnowledgeLayer:
    """edit / insert / forget / query over a model's weights and a knowledge store in one directory.

    Layout of `path`: `store/` (the KnowledgeStore: record, vectors, graph), `weights/` (live weight
    changes: `weights.json` + one record per edit or unlearning run, re-applied on open).

    One weight edit (`edit`) uses AlphaEdit, a batch (`edit_many`) MEMIT. A knowledge base stacks edits
    one call after another, and AlphaEdit's cache of past edited keys (MEMIT batches' keys included) keeps
    earlier edits while later ones land: 2 x 100 sequential CounterFact edits on SmolLM2, AlphaEdit keeps
    rewrite 0.97 / neighbourhood 0.83 where ROME falls to 0.17 / 0.32. Within one large batch there is
    nothing to protect yet, and MEMIT realises more of it (MQuAKE, 100 cases' edits in one batch:
    edit-wise 0.78 vs AlphaEdit's 0.69; benchmarks/EDITING.md). `edit_method=` / `batch_method=`, or
    `method=` per call, choose others.
    """

    def __init__(
        self,
        path: Path,
        bundle,
        store,
        *,
        edit_method: str = "alphaedit",
        batch_method: str = "memit",
        router: Router | None = None,
        edit_budget: int = 64,
        drift_budget: float = 0.15,
    ) -> None:
        self.path = path
        self.bundle = bundle
        self.store = store
        self.router = router or Router()
        self.edit_method = edit_method
        self.batch_method = batch_method
        self.edit_budget = edit_budget
        self.drift_budget = drift_budget
        self.editable = bundle.spec is not None
        self.editable_reason = bundle.extra.get("spec_error", "")
        self.weights = WeightStack(path / "weights", bundle, self._make_editor, self._make_unlearner)
        # locality baseline from the unedited model (before the stack is re-applied)
        self._probe_baseline = probe_scores(bundle)
        self.locality_drift = 0.0
        self._scope: Any = None  # kedit.scope.ScopeModel, built on first use
        self._closed_book: ClosedBookView | None = None
        self._store_backed: tuple[tuple[str, ...], set[str]] = ((), set())

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | Path,
        model: str | Any = "smollm2-135m",
        *,
        embedder=None,
        device=None,
        dtype=None,
        **options,
    ) -> KnowledgeLayer:
        """Create or reopen a knowledge base; its live weight edits are re-applied to the model.

        `model`: an embedded model name, a model directory or .gguf path (loaded on `device` in `dtype`,
        see `load_model`), an already loaded `ModelBundle`, or a `(model, tokenizer)` pair of a
        transformers model you loaded yourself (`wrap_model`). Reopening needs the model (and dtype) the
        weight edits were made on; anything else is refused before a weight changes.
        """
        from kedit.runtime import ModelBundle, load_model, wrap_model

        root = Path(path).expanduser()
        if isinstance(model, ModelBundle):
            bundle = model
        elif isinstance(model, tuple):
            if len(model) != 2:
                raise ModelNotFoundError(f"model=(model, tokenizer) takes two items, got {len(model)}")
            bundle = wrap_model(*model)
        else:
            bundle = load_model(model, device=device, dtype=dtype)
        from kedit.store import KnowledgeStore

        store = KnowledgeStore.open(root / "store", embedder=embedder)
        try:
            layer = cls(root, bundle, store, **options)
            layer.weights.load()
            if layer.weights.changes:
                layer._measure_drift()
        except BaseException:
            store.close()
            raise
        return layer

    def close(self) -> None:
        try:
            if self._closed_book is not None:
                self._closed_book.close()
                self._closed_book = None
        finally:
            self.store.close()

    def closed_book_view(self) -> ClosedBookView:
        """The same model over an empty knowledge base: how a question is answered when nothing stored is in
        its scope (`query` answers such questions here, so kedit leaves them exactly as without it)."""
        if self._closed_book is None:
            self._closed_book = ClosedBookView.open(self.bundle, self.store.embedder)
        return self._closed_book

    def out_of_scope_weights(self):
        """A context in which the model holds the weights a question out of every stored fact's scope is
        answered with: exactly as if the edits whose facts the store holds were undone (`store_backed_edits`;
        `WeightHistory.without`), every other live change kept."""
        live = tuple(c.id for c in self.weights.changes)
        if self._store_backed[0] != live:  # a change's ledger entries are written with it: cache per stack
            self._store_backed = (live, store_backed_edits(self.weights.changes, self.store.ledger))
        return self.bundle.history.without(self._store_backed[1])

    def __enter__(self) -> KnowledgeLayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make_editor(self):
        from kedit.editing import ParametricEditor

        return ParametricEditor(self.bundle)

    def _make_unlearner(self):
        from kedit.unlearning import Unlearner

        return Unlearner(self.bundle)

    # -- probes ---------------------------------------------------------------------------------
    def _measure_drift(self) -> float:
        self.locality_drift = locality_drift(self._probe_baseline, probe_scores(self.bundle))
        return self.locality_drift

    def _greedy_answer(self, prompt: str, max_new_tokens: int = 6) -> str:
        return clean_answer(self.bundle.complete(prompt, max_new_tokens=max_new_tokens))

    def _relation(self, relation: str | None, prompt_template: str | None = None) -> str | None:
        if relation is not None:
            try:
                return self.store.relations.resolve(relation).id
            except LookupError as exc:
                raise StoreError(str(exc)) from None
        if prompt_template is None:
            return None
        from kedit.scope import relation_for_template

        # the open vocabulary: a known template, else a relation whose bank holds a near-identical template
        # (the head's join_similarity, measured on counterfact-train), else a new learned relation
        relation_id, _how = relation_for_template(
            self.store, prompt_template, self.scope, self.scope.head.join_similarity
        )
        return relation_id

    @property
    def scope(self):
        """The scope model (kedit.scope.ScopeModel) over this layer's store: which facts an input is about."""
        if self._scope is None:
            from kedit.scope import ScopeModel

            self._scope = ScopeModel(self.store)
        return self._scope

    def in_scope(self, text: str, *, as_of: Any = None):
        """The scope decision for `text`: the stored facts it is about, each with its score (best first).

        >>> kl.in_scope("Every morning, Andy Kershaw looks forward to going to work at").fact.object  # doctest: +SKIP
        'Fiat'
        """
        return self.scope.decide(text, as_of=as_of)

    def read_scope(self, text: str, *, as_of: Any = None):
        """How `query` reads `text` before answering (kedit/readings.py `read_scope`): `.origin` is "scope"
        when its in-scope fact answers it by preference (`.scope.fact`), "walk" or "named object" when the
        model reads `.walked` or `.through`, and a chain's or "none" otherwise.

        >>> kl.read_scope("Who is the son of Gabrielle Bordaberry?").through[0].fact.subject  # doctest: +SKIP
        'Juan María Bordaberry'
        """
        from kedit.readings import read_scope
        from kedit.walks import pool_class

        return read_scope(self, text, pool_class()(self.store), as_of=as_of)

    # -- edit -----------------------------------------------------------------------------------
    def _request(self, prompt: str | None, target: str | None, subject: str | None, relation: str | None):
        from kedit.editing import EditRequest

        if not subject or not str(subject).strip():
            raise EditError("edit needs a subject (the entity the fact is about)")
        if target is None or not str(target).strip():
            raise EditError(f"edit of '{subject}' needs a non-empty target")
        if prompt is None:
            if relation is None:
                raise EditError("edit needs a prompt, or a subject and a relation to build one")
            prompt = self.store.relations.resolve(self._relation(relation)).cloze
        return EditRequest(prompt, subject, target)

    def edit(
        self,
        prompt: str | None = None,
        target: str | None = None,
        subject: str | None = None,
        *,
        relation: str | None = None,
        route: Route | str | None = None,
        method: str | None = None,
        sadr: bool = False,
        source: str = "edit",
        valid_from: Any = None,
        valid_to: Any = None,
        volatile: bool = False,
    ) -> EditResult:
        """Write one fact where the router decides (or `route=` forces).

        Either a prompt containing the subject (or `{}`) plus `target`, or `subject`, `relation`, `target`.
        `volatile=True` marks a fact expected to change soon (the router keeps it in the store).
        """
        return self.edit_many(
            [
                dict(
                    prompt=prompt,
                    target=target,
                    subject=subject,
                    relation=relation,
                    valid_from=valid_from,
                    valid_to=valid_to,
                    volatile=volatile,
                )
            ],
            route=route,
            method=method or self.edit_method,
            sadr=sadr,
            source=source,
        )[0]

    def edit_many(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        route: Route | str | None = None,
        method: str | None = None,
        sadr: bool = False,
        source: str = "edit",
    ) -> list[EditResult]:
        """Write many facts; weight edits of the batch go into one batch edit (`batch_method`).

        Each item has keys prompt/target/subject/relation/valid_from/valid_to/volatile. Contradictory items (same
        subject and relation, different targets) are rejected before anything changes (kedit.layer.edit).
        """
        return edit_plan.edit_many(self, items, route=route, method=method, sadr=sadr, source=source)

    # -- insert ---------------------------------------------------------------------------------
    def insert(
        self,
        text: str | None = None,
        *,
        subject: str | None = None,
        relation: str | None = None,
        object: str | None = None,
        source: str = "user",
        valid_from: Any = None,
        valid_to: Any = None,
        route: Route | str | None = None,
        extract_facts: bool = True,
    ) -> InsertResult:
        """Insert a passage (`text`) or a structured fact (`subject`, `relation`, `object`) into the store.

        Sentences of `text` that state a known relation ("The capital of X is Y.") also become facts,
        unless `extract_facts=False` (the text is kept as a passage only, e.g. an unverified source).
        `route="both"`/`"parametric"` sends a structured fact through `edit` instead.
        """
        return insert_text(
            self,
            text,
            subject=subject,
            relation=relation,
            object=object,
            source=source,
            valid_from=valid_from,
            valid_to=valid_to,
            route=route,
            extract_facts=extract_facts,
        )

    def insert_many(self, items: Iterable[Mapping[str, Any]]) -> list[InsertResult]:
        return [self.insert(**dict(item)) for item in items]

    # -- forget ---------------------------------------------------------------------------------
    def forget(
        self,
        subject: str,
        relation: str | None = None,
        object: str | None = None,
        *,
        unlearn: bool = True,
        config=None,
    ) -> ForgetReport:
        """Remove a fact from everywhere kedit keeps it (stored facts, passages that state it, graph triples,
        the weight edits that wrote it, saved evidence sessions), unlearn it from the weights if any
        closed-book probe still yields it, then verify on the model and through `query` (kedit.forgetting).

        Raises ForgetError on bad input and NothingToForgetError (changing nothing) when nothing holds it.
        """
        from kedit.forgetting import forget_fact

        return forget_fact(self, subject, relation, object, unlearn=unlearn, config=config)

    # -- undo / history -------------------------------------------------------------------------
    def undo(self, entry_id: str | int) -> dict:
        """Take back one ledger entry: its weight change (exactly) and the facts it stored."""
        return ledger.undo(self, entry_id)

    def history(self) -> list[dict]:
        """The ledger, oldest first: every edit, insert, forget and undo with its route and reasons."""
        return ledger.history(self)

    def show(self, entry_id: str | int) -> dict:
        """One ledger entry with its fact and whether its weight change is live."""
        return ledger.show(self, entry_id)

    # -- query ----------------------------------------------------------------------------------
    def query(
        self,
        question: str,
        instructions: str | None = None,
        *,
        as_of: Any = None,
        k: int = 5,
        max_new_tokens: int = 12,
    ):
        """Answer `question` from every source, resolving conflicts by the knowledge-preference rules."""
        from kedit.query import answer_question

        return answer_question(
            self, question, instructions=instructions, as_of=as_of, k=k, max_new_tokens=max_new_tokens
        )

    def query_many(
        self,
        questions: Iterable[str],
        instructions: str | None = None,
        *,
        as_of: Any = None,
        k: int = 5,
        max_new_tokens: int = 12,
    ) -> list:
        """`query` for many questions at once (the model's work of all of them is batched)."""
        from kedit.query import answer_questions

        return answer_questions(
            self, list(questions), instructions=instructions, as_of=as_of, k=k, max_new_tokens=max_new_tokens
        )

    # -- LangChain ------------------------------------------------------------------------------
    def as_retriever(self, k: int = 5):
        from kedit.integrations.langchain import KnowledgeRetriever

        return KnowledgeRetriever(layer=self, k=k)

    def as_runnable(self):
        from kedit.integrations.langchain import knowledge_runnable

        return knowledge_runnable(self)


__all__ = ["KnowledgeLayer"]
