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
How a question is read (its scope decision and reading) is in `kedit.readings`, chain walking (steps 2-3) in `kedit.walks`; answer text forms and `Answer` in `kedit.answers`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from kedit.answers import Answer, first_line, short_answer
from kedit.answers import norm_answer as _norm
from kedit.errors import KeditError
from kedit.preference import Tier
from kedit.readings import names_in, read_scope
from kedit.runtime.copying import Span
from kedit.runtime.generation import complete_many, greedy_many  # noqa: F401 - greedy_many re-exported
from kedit.statements import parse_statements
from kedit.store.hit import Hit
from kedit.walks import pool_class, walk_chains


def _facts_prompt(question: str, evidence: list[Hit]) -> str:
    facts = "\n".join(f"- {e.text}" for e in evidence if e.tier < Tier.PARAMETRIC)
    return (
        f"Answer the question using only these facts.\nFacts:\n{facts}\nQuestion: {question}\nAnswer:"
        if facts
        else f"Question: {question}\nAnswer:"
    )


def answer_questions(
    layer,
    questions: Sequence[str],
    *,
    instructions: str | None = None,
    as_of: Any = None,
    k: int = 5,
    max_new_tokens: int = 12,
    closed_book: bool = False,
) -> list[Answer]:
    """Answer many questions with the query loop (the same answers as one `answer_question` each; the
    model's work of all questions is batched hop level by hop level).

    A question that uses no stored fact, instruction or passage is answered exactly as an empty
    knowledge base answers it (`layer.closed_book_view()`, asked with `closed_book=True`): nothing from the
    store enters its prompt, and the weight edits of stored facts are left out while it is answered
    (`layer.out_of_scope_weights()`): the model answers as it would without kedit."""
    questions = list(questions)
    for question in questions:
        if not isinstance(question, str) or not question.strip():
            raise KeditError("query needs a non-empty question")
    relations = layer.store.relations
    # the store's names settle where an instruction's subject ends ("… founding year of Sigil Games Online 2002")
    statements = (
        parse_statements(instructions, relations, layer.store.linker.candidates) if instructions else []
    )
    instructed = {(_norm(s.subject), s.relation): s for s in statements}
    pool = pool_class()(layer.store, k=k)
    has_passages = layer.store.record.count("passage") > 0  # not stats(): it counts the graph too, O(facts)
    states = []
    for question in questions:
        s = read_scope(layer, question, pool, as_of=as_of)
        if has_passages:  # a passage is in scope when it names what the question is about
            # the chain's subject counts too: a relation template reads "Tetris" in "Who was Tetris
            # created by?" as the subject where no stored name links
            chain_subject = [s.slots[0].subject] if s.slots and s.slots[0].subject else []
            names = [_norm(n) for n in names_in(question, s.scope) + chain_subject]
            s.passages = [
                p
                for p in layer.store.search(question, k=k, as_of=as_of, kinds=("passage",))
                if any(n and n in _norm(p.text) for n in names)
            ]
        states.append(s)
    # a one-hop question with nothing in scope (no stored fact, passage or instruction) cannot use the
    # store: it goes straight to the empty knowledge base instead of being walked here first
    direct = (
        []
        if closed_book or instructions
        else [i for i, s in enumerate(states) if len(s.slots) <= 1 and not s.allowed and not s.passages]
    )
    out_of_scope: dict[int, Answer] = {}
    if direct:
        asked = [states[i].rewritten or questions[i] for i in direct]
        closed = _closed_book_answers(layer, asked, as_of, k, max_new_tokens)
        out_of_scope = dict(zip(direct, closed))
        for i, answer in out_of_scope.items():
            answer.trace["scope"] = states[i].scope.to_dict()
            answer.trace["closed_book"] = "nothing in scope: answered as with an empty knowledge base"
            if states[i].rewritten:  # asked of the stored country instead: that fact is evidence
                answer.trace["question"] = questions[i]
                answer.trace["closed_book"] = f"asked of the place's stored country: {states[i].rewritten!r}"
                answer.evidence[:0] = [Hit.of_fact(c.fact, c.score) for c in states[i].via]
        states = [s for i, s in enumerate(states) if i not in out_of_scope]
    walk_chains(layer, states, instructed, as_of, {})  # the prefix cache lives for this call only

    answers: list[Answer | None] = [None] * len(states)
    to_generate: list[tuple[int, dict, list[Hit], str | None]] = []
    for i, s in enumerate(states):
        trace: dict[str, Any] = {
            "question": s.question,
            "as_of": as_of,
            "instructions": instructions,
            "instruction_statements": [st.__dict__ for st in statements],
            "scope": s.scope.to_dict(),
            "chain_start": s.origin,
            "hops": s.hops,
        }
        if s.hops and not s.broken:
            # the chain is the answer: every hop was resolved by preference; no generation is needed
            weakest = max(s.chain, key=lambda e: e.tier)
            trace["mode"] = "chain"
            trace["winner"] = {
                "tier": weakest.tier.name.lower(),
                "label": weakest.tier.label,
                "why": "; ".join(h["why"] for h in s.hops),
            }
            trace["generated"] = None
            trace["seconds"] = round(time.perf_counter() - s.t0, 3)
            short = short_answer(s.entity)
            answers[i] = Answer(text=short or "", answer=short, evidence=list(s.chain), trace=trace)
            continue
        # no chain (or a broken one): answer from the in-scope evidence of the best tier present
        retrieved = [Hit.of_fact(c.fact, c.score) for c in (s.walked or s.scope.in_scope or s.through)][:k]
        retrieved += [p for p in s.passages if p.score >= 0.3][: max(0, k - len(retrieved))]
        if instructions:
            retrieved.insert(0, Hit.instruction(instructions))
        winning = sorted(retrieved, key=lambda e: (e.tier, -e.score))
        top = winning[0].tier if winning else Tier.PARAMETRIC
        winning = [e for e in winning if e.tier == top]
        trace["mode"] = "retrieval" if winning else "closed-book"
        trace["winner"] = {
            "tier": top.name.lower(),
            "label": top.label,
            "why": f"the highest tier with evidence in scope is {top.label}"
            if winning
            else "nothing in scope: the model answers from its own memory",
        }
        to_generate.append((i, trace, winning, None))

    if to_generate:
        prompts = [_facts_prompt(states[i].question, winning) for i, _, winning, _ in to_generate]
        # read from passages alone, the answer is a span of them not started by a word of the question
        # (kedit/runtime/copying.py); read from the facts holding a value the question names, it is one of
        # their subjects, whole (on ZsRE dev, 58 of 60 portability questions that name the new value and not the
        # subject ask for the subject: "Who is the son of Gabrielle Bordaberry?"), where the 135M model,
        # free, echoes the value or starts "The answer is:"
        read_from = [
            Span(tuple(e.text for e in winning), not_from=states[i].question)
            if winning and winning[0].tier == Tier.PASSAGE
            else Span(tuple(c.fact.subject for c in states[i].through), whole=True)
            if winning and states[i].through
            else None
            for i, _, winning, _ in to_generate
        ]
        texts = [
            first_line(t)
            for t in complete_many(layer.bundle, prompts, max_new_tokens, until="line", copy_from=read_from)
        ]
        # empty generation: the best evidence's own answer, else the model asked closed-book, Q/A style
        retry = [n for n, t in enumerate(texts) if not t and not any(e.answer for e in to_generate[n][2])]
        if retry:
            again = complete_many(
                layer.bundle,
                [f"Q: {states[to_generate[n][0]].question} A:" for n in retry],
                max_new_tokens,
                until="line",
            )
            for n, t in zip(retry, again):
                texts[n] = first_line(t)
                to_generate[n][1]["fallback"] = "empty generation: asked again closed-book (Q: ... A:)"
        for (i, trace, winning, _), generated in zip(to_generate, texts):
            trace["generated"] = generated
            text = generated
            if not text:
                given = next((e for e in winning if e.answer), None)
                if given is not None:
                    text = given.answer or ""
                    trace["fallback"] = (
                        f"empty generation: the answer of the best evidence ({given.tier.label})"
                    )
                else:
                    trace.setdefault("fallback", "empty generation: no answer")
            text = short_answer(text) or ""
            if not winning:
                winning = [Hit.model_answer(text, text or None)]
            elif text and winning[0].tier == Tier.PASSAGE:  # each passage says what was read from it
                winning = [e.asserting(text) if _norm(text) in _norm(e.text) else e for e in winning]
            trace["seconds"] = round(time.perf_counter() - states[i].t0, 3)
            answers[i] = Answer(text=text, answer=text or None, evidence=winning, trace=trace)
    done = [a for a in answers if a is not None]
    if not closed_book:
        _answer_out_of_scope_closed_book(layer, done, as_of=as_of, k=k, max_new_tokens=max_new_tokens)
    walked = iter(done)  # the walked questions' answers, in order, around the ones answered closed-book
    return [out_of_scope[i] if i in out_of_scope else next(walked) for i in range(len(questions))]


def _closed_book_answers(
    layer, questions: list[str], as_of: Any, k: int, max_new_tokens: int
) -> list[Answer]:
    """The empty knowledge base's answers, with the weights out-of-scope questions get (the edits whose
    facts the store holds left out: `KnowledgeLayer.out_of_scope_weights`)."""
    with layer.out_of_scope_weights():
        return answer_questions(
            layer.closed_book_view(),
            questions,
            as_of=as_of,
            k=k,
            max_new_tokens=max_new_tokens,
            closed_book=True,
        )


def _answer_out_of_scope_closed_book(
    layer, answers: list[Answer], *, as_of: Any, k: int, max_new_tokens: int
) -> None:
    """Replace, in place, every answer that used nothing from the store (no stored fact, instruction or
    passage) by the empty knowledge base's answer to the same question: out of scope, kedit changes
    nothing (a learned relation or a linked name can otherwise reshape the model's closed-book chain)."""
    todo = [n for n, a in enumerate(answers) if all(e.tier == Tier.PARAMETRIC for e in a.evidence)]
    if not todo:
        return
    redone = _closed_book_answers(
        layer, [answers[n].trace["question"] for n in todo], as_of, k, max_new_tokens
    )
    for n, fresh in zip(todo, redone):
        fresh.trace["scope"] = answers[n].trace.get("scope")
        fresh.trace["closed_book"] = "nothing in scope: answered as with an empty knowledge base"
        answers[n] = fresh


def answer_question(
    layer,
    question: str,
    *,
    instructions: str | None = None,
    as_of: Any = None,
    k: int = 5,
    max_new_tokens: int = 12,
) -> Answer:
    """Answer one question (see the module docstring); `answer_questions` batches many."""
    return answer_questions(
        layer, [question], instructions=instructions, as_of=as_of, k=k, max_new_tokens=max_new_tokens
    )[0]


__all__ = [
    "Answer",
    "answer_question",
    "answer_questions",
    "complete_many",
    "greedy_many",
    "names_in",
    "short_answer",
]
