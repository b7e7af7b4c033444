"""The scope decision: is this input about that stored fact? (SERAC's scope classifier, GRACE's deferral
radius, WISE's routing, made explicit.)

1. **Link.** The input's subject is found by matching the store's own entity names and aliases in the
   text (longest span; case, punctuation, possessives and a leading article normalised), keeping only
   entities that are the subject of a live fact; when none is named whole, a run of capitalised words
   that names one in part (`EntityLinker.partial_spans`: "Archduchess Mechthildi's Austrian"), then
   another form of a stored personal name (kedit/scope/variants.py: "Raymond Walter Wietecha" for "Ray
   Wietecha", "F Ortis"), and when nothing links that way either, a near-miss spelling of a stored
   subject's name (kedit/scope/fuzzy.py: "Derek Whiteheads", "4 Sagittarius"). Latin accents and dashes
   are folded throughout ("Angel Rosa" names "Ángel Rosa"). No capitalisation guess: an entity the store does not know has
   no stored fact to be in scope of.
2. **Score.** Each live fact of a linked subject (a handful) is scored against the input with its subject
   masked: the scope head (kedit/scope/head.py, a logistic regression over MiniLM pair features and word
   overlap) scores
   the input against every template of the fact's relation *bank* (the relation's cloze and question
   templates plus the prompt templates of the stored facts of that relation, so paraphrases seen before
   help); the cross-encoder (kedit/scope/cross.py: MiniLM reading input and template together) then
   scores the head's best few templates, and the best one's probability is the fact's score. A relation template that matches the
   input word for word settles it: in scope when it is the fact's relation, out when it is another
   curated (built-in or registered) relation.
3. **Decide.** In scope when the score reaches the threshold. The head and its threshold are fitted on
   the train files (`python -m benchmarks.studies.scope_calibrate`), never on the reported ones.

>>> from kedit.store import KnowledgeStore                                        # doctest: +SKIP
>>> store = KnowledgeStore.open("/tmp/kb-scope")                                  # doctest: +SKIP
>>> _ = store.add_fact("Andy Kershaw", "P108", "Fiat")                            # doctest: +SKIP
>>> ScopeModel(store).decide("Every morning, Andy Kershaw goes to work at").fact.object  # doctest: +SKIP
'Fiat'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kedit.scope.cross import default_cross
from kedit.scope.fuzzy import FuzzyNames
from kedit.scope.head import default_head
from kedit.scope.relations import LEARNED
from kedit.scope.text import excludes_value, masked, masked_template, nests_hops, relation_template
from kedit.scope.variants import NameVariants
from kedit.statements import match_relation


@dataclass(frozen=True)
class ScopeConfig:
    """The scope model's settings; the head (weights and threshold) comes from `scope_head.json`."""

    threshold: float | None = None  # probability at which a fact is in scope; None: the fitted scorer's
    max_bank: int = 64  # prompt templates kept per relation (the most recent first)
    cross_top: int = (
        4  # templates of a relation's bank the cross-encoder reads (the head's best); 0: head only
    )

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"ScopeConfig.threshold must be in (0, 1), got {self.threshold}")
        if self.max_bank < 1:
            raise ValueError(f"ScopeConfig.max_bank must be at least 1, got {self.max_bank}")
        if self.cross_top < 0:
            raise ValueError(f"ScopeConfig.cross_top must be at least 0, got {self.cross_top}")


@dataclass(frozen=True)
class Mention:
    """A stored entity named in a text: the span and the canonical entity name(s) it links to."""

    start: int
    end: int
    text: str
    entities: tuple[str, ...]


@dataclass(frozen=True)
class ScopeCandidate:
    """One live fact of a linked subject, with its scope probability and the features behind it."""

    fact: Any  # memory.Fact
    score: float
    features: dict[str, float] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fact_id": self.fact.id,
            "subject": self.fact.subject,
            "relation": self.fact.relation,
            "object": self.fact.object,
            "score": round(self.score, 4),
            "features": {k: round(v, 4) for k, v in self.features.items()},
        }


@dataclass(frozen=True)
class ScopeDecision:
    """What the input is about: linked mentions, every candidate fact scored, and the threshold."""

    text: str
    mentions: tuple[Mention, ...]
    candidates: tuple[ScopeCandidate, ...]  # best first
    threshold: float

    @property
    def in_scope(self) -> list[ScopeCandidate]:
        return [c for c in self.candidates if c.score >= self.threshold]

    @property
    def fact(self) -> Any | None:
        """The best in-scope fact, or None when the input is about no stored fact."""
        best = self.in_scope
        return best[0].fact if best else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mentions": [
                {"text": m.text, "entities": list(m.entities), "ambiguous": len(m.entities) > 1}
                for m in self.mentions
            ],
            "candidates": [c.to_dict() for c in self.candidates],
            "threshold": self.threshold,
            "in_scope": self.fact.id if self.fact is not None else None,
        }


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


class ScopeModel:
    """Scope decisions over one knowledge store (its entities, facts, relations and embedder)."""

    def __init__(self, store, config: ScopeConfig | None = None) -> None:
        self.store = store
        self.config = config or ScopeConfig()
        self.head = default_head()
        self.cross = default_cross() if self.config.cross_top else None
        # the fitted thresholds are logits; the decision compares probabilities
        fitted = self.cross.threshold if self.cross is not None else self.head.threshold
        self.threshold = self.config.threshold if self.config.threshold is not None else _sigmoid(fitted)
        self._banks_version: tuple[int, int] = (-1, -1)
        self._banks: dict[str, list[str]] = {}
        self._vectors: dict[str, np.ndarray] = {}  # template text -> unit vector (embedded once)
        self._bank_owners: list[str] = []
        self._bank_starts = np.zeros(0, dtype=np.int64)
        self._bank_matrix = np.zeros((0, 1), dtype=np.float32)
        self._fuzzy_version: tuple[int, int] = (-1, -1)
        self._fuzzy = FuzzyNames(())
        self._variants = NameVariants(())

    # -- linking --------------------------------------------------------------------------------
    def link(self, text: str, as_of: Any = None) -> list[Mention]:
        """Stored entities that `text` names and that are the subject of a live fact."""
        return self._link(text, as_of)[0]

    def _link(self, text: str, as_of: Any) -> tuple[list[Mention], dict[str, list]]:
        """The mentions, and the live facts of each linked entity (read once, used by `decide` too)."""
        found: list[Mention] = []
        facts: dict[str, list] = {}
        linker = self.store.linker
        # a name named in part ("Archduchess Mechthildi's Austrian father", ZsRE's paraphrases) only when no
        # stored subject is named whole; another form of a personal name ("Raymond Walter Wietecha" for
        # "Ray Wietecha"), then a near-miss spelling ("Nebajoths"), only when none of those links
        tiers = (
            linker.spans,
            linker.partial_spans,
            lambda t: self._fallbacks()[0].spans(t),
            lambda t: self._fallbacks()[1].spans(t),
        )
        for spans in tiers:
            for start, end, names in spans(text):
                for name in names:
                    if name not in facts:
                        facts[name] = self.store.facts(subject=name, as_of=as_of, include_superseded=False)
                with_facts = tuple(n for n in names if facts[n])
                if with_facts:
                    found.append(Mention(start, end, text[start:end], with_facts))
            if found:
                break
        return found, facts

    def _fallbacks(self) -> tuple[NameVariants, FuzzyNames]:
        """The live subjects' other name forms and near-miss spellings (rebuilt when the store changes)."""
        version = (self.store.record.version, len(self.store.relations))
        if version != self._fuzzy_version:
            subjects = {f.subject for f in self.store.facts(include_superseded=False)}
            self._variants, self._fuzzy = NameVariants(subjects), FuzzyNames(subjects)
            self._fuzzy_version = version
        return self._variants, self._fuzzy

    # -- relation banks -------------------------------------------------------------------------
    def _refresh_banks(self) -> None:
        version = (self.store.record.version, len(self.store.relations))
        if version == self._banks_version:
            return
        banks: dict[str, list[str]] = {}
        for relation in self.store.relations:
            banks[relation.id] = [masked_template(relation.cloze), masked_template(relation.question)]
        for fact in reversed(self.store.facts(include_superseded=True)):
            prompt = (fact.provenance or {}).get("prompt")
            bank = banks.setdefault(fact.relation, [])
            if prompt and len(bank) < self.config.max_bank + 2:
                template = masked_template(relation_template(prompt, fact.subject))
                if template not in bank:
                    bank.append(template)
        self._banks, self._banks_version = banks, version
        self._embed_missing([t for bank in banks.values() for t in bank])
        # every bank template in one matrix, grouped by relation: a query's similarities are one product
        owned = [(rel, t) for rel, bank in banks.items() for t in bank]
        self._bank_owners = [rel for rel in banks if banks[rel]]
        self._bank_starts = np.cumsum([0] + [len(banks[rel]) for rel in self._bank_owners])[:-1]
        self._bank_matrix = (
            np.stack([self._vectors[t] for _, t in owned]) if owned else np.zeros((0, 1), np.float32)
        )

    def _embed_missing(self, texts: list[str]) -> None:
        todo = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if todo:
            for text, vector in zip(todo, np.asarray(self.store.embedder.encode(todo), dtype=np.float32)):
                self._vectors[text] = vector

    def bank(self, relation_id: str) -> list[str]:
        """The masked templates that express `relation_id` in this store."""
        self._refresh_banks()
        return list(self._banks.get(relation_id, ()))

    # -- scoring --------------------------------------------------------------------------------
    def _embed(self, text: str) -> np.ndarray:
        return np.asarray(self.store.embedder.encode([text]), dtype=np.float32)[0]

    def similarities(self, masked_query: str) -> dict[str, float]:
        """Cosine of a masked text to the nearest template of every relation's bank."""
        self._refresh_banks()
        if not self._bank_owners:
            return {}
        best = np.maximum.reduceat(self._bank_matrix @ self._embed(masked_query), self._bank_starts)
        return dict(zip(self._bank_owners, best.tolist()))

    def _learned(self, relation_id: str) -> bool:
        return self.store.relations.resolve(relation_id).source == LEARNED

    def _relation_score(
        self, vector: np.ndarray, query: str, relation_id: str, lexical: str | None
    ) -> dict[str, float]:
        """Scope probability of (input, relation) and what it rests on."""
        if lexical == relation_id:  # the fact's own relation template matches the input word for word
            return {"probability": 1.0, "lexical": 1.0}
        if lexical is not None and not (self._learned(lexical) or self._learned(relation_id)):
            # another curated relation's template matches it: a different question. Learned relations
            # are kept apart only at near-identical wording, so one may be the same relation as another.
            return {"probability": 0.0, "lexical": -1.0}
        bank = self._banks.get(relation_id) or []
        if not bank:
            return {"probability": 0.0, "lexical": 0.0}
        logits = self.head.logits(vector, query, np.stack([self._vectors[t] for t in bank]), bank)
        best = int(np.argmax(logits))
        feats = {
            "probability": _sigmoid(float(logits[best])),
            "lexical": 0.0,
            "head": float(logits[best]),
            "cosine": float(self._vectors[bank[best]] @ vector),
        }
        if self.cross is not None:  # the second stage reads the pair together, on the head's best templates
            top = [bank[i] for i in np.argsort(-logits, kind="stable")[: self.config.cross_top]]
            cross = float(np.max(self.cross.logits(query, top)))
            feats |= {"probability": _sigmoid(cross), "cross": cross}
        return feats

    def decide(self, text: str, as_of: Any = None) -> ScopeDecision:
        """Score every live fact of every stored subject `text` names; the best in-scope one first."""
        mentions, facts = self._link(text, as_of)
        candidates: list[ScopeCandidate] = []
        if mentions:
            self._refresh_banks()
            lexical = match_relation(text, self.store.relations)
        for mention in mentions:
            # a template matched word for word by a question that nests hops is the outer hop's (its
            # subject is the nested phrase, not this mention): it neither settles nor rules out a fact here
            lexical_here = None if nests_hops(text, mention.start, mention.end) else lexical
            query = masked(text, mention.start, mention.end)
            vector = self._embed(query)
            by_relation: dict[str, dict[str, float]] = {}
            for entity in mention.entities:
                for fact in facts[entity]:
                    if fact.relation not in by_relation:
                        by_relation[fact.relation] = self._relation_score(
                            vector, query, fact.relation, lexical_here
                        )
                    feats = by_relation[fact.relation]
                    if excludes_value(text, fact.object):  # "X's occupation, which is not V, is"
                        feats = {**feats, "probability": 0.0, "value_excluded": 1.0}
                    candidates.append(ScopeCandidate(fact, feats["probability"], feats))
        candidates.sort(key=lambda c: (-c.score, -(c.fact.id or 0)))
        return ScopeDecision(text, tuple(mentions), tuple(candidates), self.threshold)

    def named_objects(self, text: str, as_of: Any = None, max_facts: int = 2) -> list[ScopeCandidate]:
        """The live facts whose object `text` names whole, where that name is the object of at most
        `max_facts` of them and the subject of none: a question asked through a stored value ("Who is the
        son of Gabrielle Bordaberry?" once "The father of Juan María Bordaberry is Gabrielle Bordaberry" is
        stored) may read them. A hub ("United States", the object of many facts) names no fact in
        particular. Evidence for the model to read, never an answer by preference (score 0)."""
        found: list[ScopeCandidate] = []
        for _, _, names in self.store.linker.spans(text):
            for name in names:
                if self.store.facts(subject=name, as_of=as_of, include_superseded=False):
                    continue  # a stored subject: the scope decision's own business
                facts = self.store.facts(object=name, as_of=as_of, include_superseded=False)
                if 0 < len(facts) <= max_facts:
                    found += [ScopeCandidate(f, 0.0, {"object_named": 1.0}) for f in facts]
        return found

    def walk(self, decision: ScopeDecision, as_of: Any = None, depth: int = 3) -> list[ScopeCandidate]:
        """The stored facts reachable from `decision`'s in-scope facts through their objects, each one's
        relation in scope of the input's wording (a question that nests hops, "the head of state of the
        country X is a citizen of", names every relation it walks), up to `depth` facts from a linked
        subject; the in-scope facts first, then hop by hop."""
        walked = list(decision.in_scope)
        if not walked or depth < 2:
            return walked
        self._refresh_banks()
        lexical = match_relation(decision.text, self.store.relations)
        queries = [masked(decision.text, m.start, m.end) for m in decision.mentions]
        vectors = [(q, self._embed(q)) for q in queries]
        seen = {c.fact.id for c in walked}
        frontier = walked
        for _ in range(depth - 1):
            found = []
            for candidate in frontier:
                names = self.store.linker.candidates(candidate.fact.object) or [candidate.fact.object]
                for fact in self.store.facts(subject=names[0], as_of=as_of, include_superseded=False):
                    if fact.id in seen:
                        continue
                    feats = max(
                        (self._relation_score(v, q, fact.relation, lexical) for q, v in vectors),
                        key=lambda f: f["probability"],
                    )
                    if feats["probability"] >= self.threshold:
                        seen.add(fact.id)
                        found.append(ScopeCandidate(fact, feats["probability"], feats))
            walked += found
            frontier = found
            if not frontier:
                break
        return walked


__all__ = ["Mention", "ScopeCandidate", "ScopeConfig", "ScopeDecision", "ScopeModel"]
