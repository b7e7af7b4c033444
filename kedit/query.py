"""The query loop: gather evidence from every source, resolve conflicts by preference, answer.

1. Instructions: sentences that state a known relation bind hops at the top tier; the text itself is
   kept as evidence.
2. The question's (subject, relation, ?) slots come from the evidence pool's slot extraction (relation
   templates, relation cue phrases ordered outward from the entity). When the store does not know the
   entity, the one the question names (a whole relation template's subject, else its longest
   capitalised name) starts the chain anyway: its hops are answered by the model, closed-book.
3. The chain is walked hop by hop. At each hop the candidates are: an instruction statement, the stored
   facts valid at `as_of` (newest first), a retrieved passage about the subject (read by the model), and
   the model's closed-book answer (the relation's few-shot `Q: ... A:` question when the vocabulary has
   demos, else its cloze); `preference.resolve` picks one and its answer becomes the next hop's subject
   (edited facts therefore override the chain). A walked chain is the answer: no generation is needed.
4. Without a chain, the RFM-RAG pool retrieves over rounds and the model generates the answer from the
   winning tier's evidence only (an empty generation falls back to that evidence's answer, else to a
   closed-book `Q: ... A:`). `Answer.trace` says which tier won and why, hop by hop; `Answer.evidence`
   lists what was used. Short answers are returned without a leading lowercase "the".

`answer_questions` answers many questions at once: the model's work of every question at one hop level
is one batched greedy call (`greedy_many`: shared prompt prefixes computed once, left padding).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kedit.errors import KeditError, StoreError
from kedit.preference import Evidence, Tier, resolve
from kedit.runtime.generation import complete_many, greedy_many  # noqa: F401 - greedy_many re-exported
from kedit.statements import parse_statements


@dataclass
class Answer:
    """An answer with its evidence (winning first) and a trace of how it was reached."""

    text: str
    answer: str | None
    evidence: list[Evidence]
    trace: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"text": self.text, "answer": self.answer, "evidence": [e.to_dict() for e in self.evidence],
                "trace": self.trace}

# ---------------------------------------------------------------- the query loop

_QUESTION_WORDS = {"who", "what", "which", "where", "when", "whose", "whom", "how", "in", "on", "at", "is", "are",
                   "was", "were", "did", "does", "do", "name", "tell", "the", "a", "an", "of"}
_NAME_GLUE = {"of", "de", "del", "da", "di", "von", "van", "der", "den", "du", "la", "le", "y", "and", "the", "al"}
_WORD = re.compile(r"[\w][\w.'\-&]*")
_CHAIN_TOKENS = 6  # closed-book cloze answer of one hop (a short entity name)
_LINE_TOKENS = 12  # closed-book answer line of a few-shot relation question


def _norm(text: str | None) -> str:
    """Comparison form of an answer: case-folded, spaces collapsed, a leading article dropped."""
    folded = " ".join((text or "").casefold().split())
    return folded[4:] if folded.startswith("the ") and len(folded) > 4 else folded


def short_answer(text: str | None) -> str | None:
    """A returned short answer without a leading lowercase "the" ("the United States" -> "United
    States"); a capitalised "The" is kept, being usually part of a name ("The Hague")."""
    if text is None:
        return None
    text = text.strip()
    if text.startswith("the ") and 1 < len(text.split()) <= 6:
        text = text[4:].strip()
    return text


def _subject_in_text(question: str) -> tuple[str, int] | None:
    """The entity a question names when the store does not know it: the longest run of capitalised
    words (name glue such as "of"/"von" allowed inside), question words at the start left out."""
    words = [(m.group(0), m.start()) for m in _WORD.finditer(question)]
    best: tuple[int, int, int] | None = None  # (length, first word, last word)
    i = 0
    while i < len(words):
        word = words[i][0]
        if (word[0].isupper() or word[0].isdigit()) and not (i == 0 and word.casefold() in _QUESTION_WORDS):
            j = i
            while j + 1 < len(words):
                nxt = words[j + 1][0]
                gap = question[words[j][1] + len(words[j][0]) : words[j + 1][1]]
                if "\n" in gap or any(c in gap for c in ".:;!?"):
                    break  # a name does not run across a line or a sentence break
                if nxt[0].isupper() or nxt[0].isdigit():
                    j += 1
                elif nxt.casefold() in _NAME_GLUE and j + 2 < len(words) and words[j + 2][0][0].isupper():
                    j += 2
                else:
                    break
            if best is None or j - i + 1 >= best[0]:
                best = (j - i + 1, i, j)
            i = j + 1
        else:
            i += 1
    if best is None:
        return None
    _, first, last = best
    start = words[first][1]
    end = words[last][1] + len(words[last][0])
    name = question[start:end].rstrip(".'").removesuffix("'s").strip()
    return (name, start) if name else None


def _looks_like_name(text: str) -> bool:
    """A template's subject group is taken as an entity only when it reads like a name: at most six
    words, none of them a question word at the start, one capitalised (not "the country that X ...")."""
    words = text.strip().split()
    if not words or len(words) > 6 or words[0].casefold() in _QUESTION_WORDS - {"the"}:
        return False
    lower = [w for w in words if not (w[0].isupper() or w[0].isdigit()) and w.casefold() not in _NAME_GLUE]
    return not lower and any(w[0].isupper() or w[0].isdigit() for w in words)


def _pool_class():
    from kedit.store.evidence import EvidencePool, Slot

    class Pool(EvidencePool):
        """The evidence pool with two additions for the query loop: the relation templates' vectors are
        embedded once per store (not per question), and a chain can start from an entity the store does
        not know (named in the question; its first hop is then answered by the model, closed-book)."""

        _vectors: dict[int, tuple[int, Any]] = {}

        def _closest_relation(self, question: str):
            relations = list(self.store.relations)
            key = id(self.store)
            cached = self._vectors.get(key)
            if cached is None or cached[0] != len(relations):
                cached = (len(relations), self.store._embed([r.question.format("X") for r in relations]))
                self._vectors[key] = cached
            scores = cached[1] @ self.store._embed([question])[0]
            return relations[int(scores.argmax())]

        def chain_slots(self, question: str) -> tuple[list, str]:
            """The question's slots and where the first subject came from ("store", "text" or "none")."""
            slots = self.extract_slots(question)
            if slots and slots[0].subject is not None:
                return slots, "store"
            for relation, pattern in self._templates:  # a whole relation template: its subject slot
                match = pattern.match(question)
                if match and _looks_like_name(match.group("subject")):
                    return [Slot(0, relation.id, match.group("subject").strip())], "text"
            named = _subject_in_text(question)
            folded = question.casefold()
            cues = self._relation_cues(folded)
            if named is None or not cues:
                return slots, "none"  # no relation named: no chain to walk (retrieval answers)
            name, at = named
            cues = [c for c in cues if not (at <= c[0] < at + len(name))]
            if not cues:
                return slots, "none"
            cues.sort(key=lambda cue: abs(cue[0] - at))
            chain = [Slot(0, cues[0][1], name)] + [Slot(i, r) for i, (_, r) in enumerate(cues[1:], start=1)]
            return chain, "text"

    return Pool


def _fact_evidence(fact, relations, score: float = 1.0) -> Evidence:
    return Evidence(
        Tier.STORED, fact.sentence, fact.object, source=fact.source, fact_id=fact.id, score=score,
        timestamp=fact.start or "", meta={"subject": fact.subject, "relation": fact.relation,
                                          "relation_label": relations.resolve(fact.relation).label},
    )


def _closed_book_prompt(relation, subject: str) -> tuple[str, str]:
    """The model's closed-book question for one hop: the relation's few-shot `Q: ... A:` demos and its
    question template when the vocabulary has demos ("line": the answer is the first line), else its
    cloze template ("cloze": the answer is the first clause)."""
    if relation.few_shot:
        return f"{relation.few_shot.rstrip()}\nQ: {relation.ask(subject)} A:", "line"
    return relation.cloze.format(subject), "cloze"


def _read_answer(text: str, form: str) -> str:
    from kedit.probes import clean_answer as _clean_answer

    if form == "line":
        line = text.strip().split("\n")[0].strip()
        return line[:-1].strip() if line.endswith(".") and not line[-3:-1].count(".") else line
    return _clean_answer(text)


@dataclass
class _State:
    """One question's progress through the loop."""

    question: str
    t0: float
    slots: list = field(default_factory=list)
    origin: str = "none"
    passages: list = field(default_factory=list)
    hops: list = field(default_factory=list)
    chain: list = field(default_factory=list)
    entity: str | None = None
    pool: Any = None
    broken: bool = False
    scope: Any = None  # the question's ScopeDecision
    allowed: set | None = None  # stored facts a one-hop question may use (its in-scope facts)


def _stored_candidates(layer, subject: str, relation_id: str, instructed: dict, as_of,
                       linked: dict[str, str], allowed: set[int] | None = None) -> list[Evidence]:
    """Instruction and stored-fact candidates of one hop; `allowed` (the scope decision of a one-hop
    question) limits the stored facts to those the question is in scope of."""
    store, relations = layer.store, layer.store.relations
    candidates: list[Evidence] = []
    said = instructed.get((_norm(subject), relation_id))
    if said is not None:
        candidates.append(Evidence(Tier.INSTRUCTION, said.text, said.object, source="instruction"))
    if subject not in linked:  # entity linking (names, aliases, then embedding) once per name and call
        try:
            linked[subject] = store.link_entity(subject) or subject
        except StoreError:  # not a usable name (a model's answer may hold a control character)
            linked[subject] = subject
    entity = linked[subject]
    for fact in store.facts(subject=entity, relation=relation_id, as_of=as_of, include_superseded=False):
        if allowed is None or fact.id in allowed:
            candidates.append(_fact_evidence(fact, relations))
    return candidates


def _reading_prompt(passage: str, cloze: str) -> str:
    """Ask the model to complete the hop's cloze from the passage. "According to the text above" made
    SmolLM2-135M copy a counterfactual passage's answer in 9 of 10 MQuAKE edits, against 5 of 10 for the bare
    passage + cloze (benchmarks/conflicts.py, kind free_passage_vs_model)."""
    lead = "the " + cloze[4:] if cloze.startswith("The ") else cloze
    return f"{passage}\nAccording to the text above, {lead}"


def _passage_statement(passages, subject: str, relation_id: str, relations) -> Evidence | None:
    """Passage evidence for a hop when a passage states it in a relation template's words ("The capital of
    X is Y."): the object is taken as written; a small model reading it would often answer from its prior."""
    for p in passages:
        for st in parse_statements(p.text, relations):
            if st.relation == relation_id and _norm(st.subject) == _norm(subject):
                return Evidence(Tier.PASSAGE, p.text, st.object, source=p.source, passage_id=p.id, score=p.score,
                                meta={"read": "template"})
    return None


def _walk_chains(layer, states: list[_State], instructed: dict, as_of, prefix_cache: dict) -> None:
    """Walk every question's chain hop by hop, all questions in step, so the model's closed-book and
    passage-reading answers of one hop level are generated together (one batched call)."""
    relations = layer.store.relations
    active = [s for s in states if s.slots and s.slots[0].subject is not None]
    linked: dict[str, str] = {}
    for s in active:
        s.entity = s.slots[0].subject
    level = 0
    while active:
        jobs: list[tuple[_State, list[Evidence], Any, str]] = []
        asks: list[tuple[int, str, str, Any]] = []  # (job, prompt, form, passage)
        for s in active:
            slot = s.slots[level]
            relation = relations.resolve(slot.relation)
            candidates = _stored_candidates(layer, s.entity, slot.relation, instructed, as_of, linked,
                                            s.allowed if level == 0 else None)
            jobs.append((s, candidates, relation, s.entity))
            if any(c.tier <= Tier.STORED for c in candidates):
                continue  # a higher tier already answers this hop: skip the model's reading work
            about = [p for p in s.passages if _norm(s.entity) in _norm(p.text)]
            stated = _passage_statement(about, s.entity, relation.id, relations)
            if stated is not None:  # the passage states this hop in the relation's own words: no reading
                candidates.append(stated)
            elif about:
                asks.append((len(jobs) - 1, _reading_prompt(about[0].text, relation.cloze.format(s.entity)), "cloze",
                             about[0]))
            prompt, form = _closed_book_prompt(relation, s.entity)
            asks.append((len(jobs) - 1, prompt, form, None))
        if asks:
            unique = list(dict.fromkeys((p, f) for _, p, f, _ in asks))
            texts = complete_many(layer.bundle, [p for p, _ in unique],
                                  [_LINE_TOKENS if f == "line" else _CHAIN_TOKENS for _, f in unique], until="line",
                                  prefix_cache=prefix_cache)
            read = {key: short_answer(_read_answer(t, key[1])) for key, t in zip(unique, texts)}
            for job, prompt, form, passage in asks:
                said = read[(prompt, form)]
                if not said:
                    continue
                s, candidates, relation, subject = jobs[job]
                if passage is not None:
                    if _norm(said) not in _norm(passage.text) or _norm(said) in _norm(subject):
                        continue  # not read from the passage (the model's prior), or a piece of the subject
                    candidates.append(Evidence(Tier.PASSAGE, passage.text, said, source=passage.source,
                                               passage_id=passage.id, score=passage.score))
                else:
                    shown = prompt.rsplit("\n", 1)[-1] if form == "line" else prompt
                    candidates.append(Evidence(Tier.PARAMETRIC, f"{shown} {said}", said, source="model",
                                               meta={"closed_book": form}))
        still = []
        for s, candidates, relation, subject in jobs:
            res = resolve(candidates)
            s.hops.append({
                "subject": subject, "relation": relation.id, "relation_label": relation.label,
                "answer": res.winner.answer if res.winner else None,
                "tier": res.winner.tier.name.lower() if res.winner else None, "why": res.why, "conflict": res.conflict,
                "candidates": [c.to_dict() for c in res.ranked],
            })
            if res.winner is None:
                s.entity, s.broken = None, True
                continue
            s.chain.append(res.winner)
            s.entity = res.winner.answer
            if level + 1 < len(s.slots):
                still.append(s)
        active = still
        level += 1


def _facts_prompt(question: str, evidence: list[Evidence]) -> str:
    facts = "\n".join(f"- {e.text}" for e in evidence if e.tier < Tier.PARAMETRIC)
    return (f"Answer the question using only these facts.\nFacts:\n{facts}\nQuestion: {question}\nAnswer:"
            if facts else f"Question: {question}\nAnswer:")


def _first_line(text: str) -> str:
    return text.strip().split("\n")[0].strip()


def names_in(question: str, decision) -> list[str]:
    """The names a question is about: its linked mentions, else the name it spells (capitalised run)."""
    names = [m.text for m in decision.mentions] + [e for m in decision.mentions for e in m.entities]
    named = _subject_in_text(question)
    if named is not None:
        names.append(named[0])
    return [n for n in dict.fromkeys(names) if n]


def _scope_slots(state: _State, pool, question: str) -> None:
    """A question's chain: a multi-hop chain as the relation cues give it; a one-hop question is about
    its in-scope stored fact (the scope decision), and may use no other stored fact."""
    state.slots, state.origin = pool.chain_slots(question)
    if len(state.slots) > 1:
        return
    fact = state.scope.fact
    state.allowed = {c.fact.id for c in state.scope.in_scope}
    if fact is not None:
        from kedit.store.evidence import Slot

        state.slots, state.origin = [Slot(0, fact.relation, fact.subject)], "scope"


def answer_questions(layer, questions: Sequence[str], *, instructions: str | None = None, as_of: Any = None,
                     k: int = 5, max_new_tokens: int = 12, closed_book: bool = False) -> list[Answer]:
    """Answer many questions with the query loop (the same answers as one `answer_question` each; the
    model's work of all questions is batched hop level by hop level).

    A question that uses no stored fact, instruction or passage is answered exactly as an empty
    knowledge base answers it (`layer.closed_book_view()`, asked with `closed_book=True`): nothing from the
    store enters its prompt."""
    questions = list(questions)
    for question in questions:
        if not isinstance(question, str) or not question.strip():
            raise KeditError("query needs a non-empty question")
    relations = layer.store.relations
    statements = parse_statements(instructions, relations) if instructions else []
    instructed = {(_norm(s.subject), s.relation): s for s in statements}
    pool = _pool_class()(layer.store, k=k)
    has_passages = layer.store.record.count("passage") > 0  # not stats(): it counts the graph too, O(facts)
    states = []
    for question in questions:
        s = _State(question, time.perf_counter())
        s.scope = layer.scope.decide(question, as_of=as_of)
        _scope_slots(s, pool, question)
        if has_passages:  # a passage is in scope when it names what the question is about
            names = [_norm(n) for n in names_in(question, s.scope)]
            s.passages = [p for p in layer.store.search(question, k=k, as_of=as_of, kinds=("passage",))
                          if any(n and n in _norm(p.text) for n in names)]
        states.append(s)
    # a one-hop question with nothing in scope (no stored fact, passage or instruction) cannot use the
    # store: it goes straight to the empty knowledge base instead of being walked here first
    direct = [] if closed_book or instructions else [
        i for i, s in enumerate(states) if len(s.slots) <= 1 and not s.allowed and not s.passages]
    out_of_scope: dict[int, Answer] = {}
    if direct:
        closed = answer_questions(layer.closed_book_view(), [questions[i] for i in direct], as_of=as_of, k=k,
                                  max_new_tokens=max_new_tokens, closed_book=True)
        out_of_scope = dict(zip(direct, closed))
        for i, answer in out_of_scope.items():
            answer.trace["scope"] = states[i].scope.to_dict()
            answer.trace["closed_book"] = "nothing in scope: answered as with an empty knowledge base"
        states = [s for i, s in enumerate(states) if i not in out_of_scope]
    _walk_chains(layer, states, instructed, as_of, {})  # the prefix cache lives for this call only

    answers: list[Answer | None] = [None] * len(states)
    to_generate: list[tuple[int, dict, list[Evidence], str | None]] = []
    for i, s in enumerate(states):
        trace: dict[str, Any] = {
            "question": s.question, "as_of": as_of, "instructions": instructions,
            "instruction_statements": [st.__dict__ for st in statements],
            "scope": s.scope.to_dict(), "chain_start": s.origin, "hops": s.hops,
        }
        if s.hops and not s.broken:
            # the chain is the answer: every hop was resolved by preference; no generation is needed
            weakest = max(s.chain, key=lambda e: e.tier)
            trace["mode"] = "chain"
            trace["winner"] = {"tier": weakest.tier.name.lower(), "label": weakest.tier.label,
                               "why": "; ".join(h["why"] for h in s.hops)}
            trace["generated"] = None
            trace["seconds"] = round(time.perf_counter() - s.t0, 3)
            answer = short_answer(s.entity)
            answers[i] = Answer(text=answer or "", answer=answer, evidence=list(s.chain), trace=trace)
            continue
        # no chain (or a broken one): answer from the in-scope evidence of the best tier present
        retrieved = [_fact_evidence(c.fact, relations, c.score) for c in s.scope.in_scope][:k]
        retrieved += [Evidence(Tier.PASSAGE, p.text, None, source=p.source, passage_id=p.id, score=p.score)
                      for p in s.passages if p.score >= 0.3][: max(0, k - len(retrieved))]
        if instructions:
            retrieved.insert(0, Evidence(Tier.INSTRUCTION, instructions, None, source="instruction"))
        winning = sorted(retrieved, key=lambda e: (e.tier, -e.score))
        top = winning[0].tier if winning else Tier.PARAMETRIC
        winning = [e for e in winning if e.tier == top]
        trace["mode"] = "retrieval" if winning else "closed-book"
        trace["winner"] = {"tier": top.name.lower(), "label": top.label,
                           "why": f"the highest tier with evidence in scope is {top.label}" if winning
                           else "nothing in scope: the model answers from its own memory"}
        to_generate.append((i, trace, winning, None))

    if to_generate:
        prompts = [_facts_prompt(states[i].question, winning) for i, _, winning, _ in to_generate]
        texts = [_first_line(t) for t in complete_many(layer.bundle, prompts, max_new_tokens, until="line")]
        # empty generation: the best evidence's own answer, else the model asked closed-book, Q/A style
        retry = [n for n, t in enumerate(texts) if not t and not any(e.answer for e in to_generate[n][2])]
        if retry:
            again = complete_many(layer.bundle, [f"Q: {states[to_generate[n][0]].question} A:" for n in retry],
                                  max_new_tokens, until="line")
            for n, t in zip(retry, again):
                texts[n] = _first_line(t)
                to_generate[n][1]["fallback"] = "empty generation: asked again closed-book (Q: ... A:)"
        for (i, trace, winning, _), generated in zip(to_generate, texts):
            trace["generated"] = generated
            text = generated
            if not text:
                given = next((e for e in winning if e.answer), None)
                if given is not None:
                    text = given.answer
                    trace["fallback"] = f"empty generation: the answer of the best evidence ({given.tier.label})"
                else:
                    trace.setdefault("fallback", "empty generation: no answer")
            text = short_answer(text) or ""
            if not winning:
                winning = [Evidence(Tier.PARAMETRIC, text, text or None, source="model")]
            trace["seconds"] = round(time.perf_counter() - states[i].t0, 3)
            answers[i] = Answer(text=text, answer=text or None, evidence=winning, trace=trace)
    done = [a for a in answers if a is not None]
    if not closed_book:
        _answer_out_of_scope_closed_book(layer, done, as_of=as_of, k=k, max_new_tokens=max_new_tokens)
    walked = iter(done)  # the walked questions' answers, in order, around the ones answered closed-book
    return [out_of_scope[i] if i in out_of_scope else next(walked) for i in range(len(questions))]


def _answer_out_of_scope_closed_book(layer, answers: list[Answer], *, as_of: Any, k: int,
                                     max_new_tokens: int) -> None:
    """Replace, in place, every answer that used nothing from the store (no stored fact, instruction or
    passage) by the empty knowledge base's answer to the same question: out of scope, kedit changes
    nothing (a learned relation or a linked name can otherwise reshape the model's closed-book chain)."""
    todo = [n for n, a in enumerate(answers) if all(e.tier == Tier.PARAMETRIC for e in a.evidence)]
    if not todo:
        return
    redone = answer_questions(layer.closed_book_view(), [answers[n].trace["question"] for n in todo],
                              as_of=as_of, k=k, max_new_tokens=max_new_tokens, closed_book=True)
    for n, fresh in zip(todo, redone):
        fresh.trace["scope"] = answers[n].trace.get("scope")
        fresh.trace["closed_book"] = "nothing in scope: answered as with an empty knowledge base"
        answers[n] = fresh


def answer_question(layer, question: str, *, instructions: str | None = None, as_of: Any = None, k: int = 5,
                    max_new_tokens: int = 12) -> Answer:
    """Answer one question (see the module docstring); `answer_questions` batches many."""
    return answer_questions(layer, [question], instructions=instructions, as_of=as_of, k=k,
                            max_new_tokens=max_new_tokens)[0]
