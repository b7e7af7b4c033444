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

import copy
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kedit.errors import KeditError
from kedit.preference import Evidence, Tier, resolve
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

# ---------------------------------------------------------------- batched greedy generation


def _cache_arg(model) -> str:
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _common_prefix(rows: list[list[int]]) -> int:
    n = min(len(r) for r in rows)
    first = rows[0]
    for i in range(n):
        if any(r[i] != first[i] for r in rows[1:]):
            return i
    return n


def _out_cache(out, arg: str):
    cache = getattr(out, arg, None)
    return cache if cache is not None else out.past_key_values


def _eos_ids(bundle) -> set[int]:
    """End-of-text ids as `generate` uses them (the generation config's, plus the tokenizer's)."""
    ids = {bundle.tokenizer.eos_token_id}
    config = getattr(bundle.model, "generation_config", None)
    extra = getattr(config, "eos_token_id", None) if config is not None else None
    ids |= set(extra) if isinstance(extra, (list, tuple)) else {extra}
    return {i for i in ids if i is not None}


def _line_boundary(tok, ids: list[int], n: int) -> int:
    """Length of the longest prefix of `ids[:n]` that ends with a newline token (0 if none)."""
    for i in range(n - 1, -1, -1):
        if "\n" in tok.decode([ids[i]]):
            return i + 1
    return 0


_UNTIL = ("newline", "line", "none")


def _finished(text: str, until: str) -> bool:
    if until == "newline":
        return "\n" in text
    if until == "line":
        return "\n" in text.lstrip()
    return False


_LONG = 48  # prompts at least this long (tokens) are batched by shared prefix (few-shot demos)
_BATCH_OVERHEAD = 64  # a new batch costs about this many prefill tokens (its decode steps)


def _batches(indices: list[int], ids: list[list[int]], batch_size: int) -> list[list[int]]:
    """Batches of prompt indices that waste little padding: short prompts sorted by length; long ones
    sorted by their tokens (shared prefixes adjacent) and merged while the padded cost stays below the
    cost of separate batches."""
    short = sorted((i for i in indices if len(ids[i]) < _LONG), key=lambda i: len(ids[i]))
    out = [short[s : s + batch_size] for s in range(0, len(short), batch_size)]
    cur: list[int] = []
    prefix = longest = 0
    for i in sorted((i for i in indices if len(ids[i]) >= _LONG), key=lambda i: ids[i]):
        if cur:
            n_prefix = min(prefix, _common_prefix([ids[cur[-1]], ids[i]]), len(ids[i]) - 1)
            width = max(longest, len(ids[i]))
            merged = n_prefix + (len(cur) + 1) * (width - n_prefix)
            apart = prefix + len(cur) * (longest - prefix) + len(ids[i]) + _BATCH_OVERHEAD
            if len(cur) < batch_size and merged <= apart:
                cur.append(i)
                prefix, longest = n_prefix, width
                continue
            out.append(cur)
        cur, prefix, longest = [i], len(ids[i]) - 1, len(ids[i])
    if cur:
        out.append(cur)
    return out


def greedy_many(bundle, prompts: Sequence[str], max_new_tokens: int | Sequence[int], *, until: str = "none",
                batch_size: int = 32, stop_when: Sequence[Callable[[str], bool] | None] | None = None,
                prefix_cache: dict | None = None) -> list[list[int]]:
    """Greedy continuations of many prompts, batched; returns each prompt's new token ids.

    The same tokens as one `model.generate(do_sample=False)` per prompt (up to float rounding of the
    batched matmuls): prompts are sorted by their tokens, a batch's common token prefix is run once and
    its keys/values shared, the rest is left-padded (masked, positions kept). A row stops at its own
    budget, at end-of-text, or when its decoded text meets `until`: "newline" (a newline anywhere, as a
    `\\n` stop string does), "line" (a newline after some non-space text: enough for the first line of
    the stripped text) or "none", or when `stop_when[i]` (if given) returns True for its text.

    A shared prefix of at least 48 tokens is cut at its last newline and its keys/values kept in
    `prefix_cache` (a dict the caller may pass to share them between calls: only while the weights do
    not change) for every batch with that prefix.
    """
    import torch

    if until not in _UNTIL:
        raise ValueError(f"until must be one of {_UNTIL}, not {until!r}")
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(budgets) != len(prompts) or (stop_when is not None and len(stop_when) != len(prompts)):
        raise ValueError(f"{len(prompts)} prompts but {len(budgets)} budgets")
    tok, model = bundle.tokenizer, bundle.model
    arg = _cache_arg(model)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    ids = [tok(p)["input_ids"] for p in prompts]
    eos = _eos_ids(bundle)
    prefix_cache = {} if prefix_cache is None else prefix_cache
    results: list[list[int]] = [[] for _ in prompts]
    device = bundle.device
    with torch.no_grad():
        for rows in _batches([i for i in range(len(prompts)) if budgets[i] > 0], ids, batch_size):
            seqs = [ids[i] for i in rows]
            n_prefix = min(_common_prefix(seqs), min(len(s) for s in seqs) - 1)
            cache = None
            if n_prefix > 0:
                # a few-shot prefix (up to its last newline) is kept for the next batches of this call
                n_key = _line_boundary(tok, seqs[0], n_prefix)
                if n_key >= _LONG:
                    key = tuple(seqs[0][:n_key])
                    if key not in prefix_cache:
                        out = model(input_ids=torch.tensor([list(key)], device=device), use_cache=True,
                                    logits_to_keep=1)
                        prefix_cache[key] = _out_cache(out, arg)
                    cache, n_prefix = copy.deepcopy(prefix_cache[key]), n_key
                else:
                    out = model(input_ids=torch.tensor([seqs[0][:n_prefix]], device=device), use_cache=True,
                                logits_to_keep=1)
                    cache = _out_cache(out, arg)
                if len(rows) > 1:
                    cache.batch_repeat_interleave(len(rows))
            tails = [s[n_prefix:] for s in seqs]
            width = max(len(t) for t in tails)
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), n_prefix + width), dtype=torch.long)
            mask[:, :n_prefix] = 1
            positions = torch.zeros((len(rows), width), dtype=torch.long)
            for r, t in enumerate(tails):
                input_ids[r, width - len(t) :] = torch.tensor(t)
                mask[r, n_prefix + width - len(t) :] = 1
                positions[r, width - len(t) :] = torch.arange(n_prefix, n_prefix + len(t))
            nxt_pos = torch.tensor([n_prefix + len(t) for t in tails])
            live = list(range(len(rows)))  # batch row -> index into rows
            new: list[list[int]] = [[] for _ in rows]
            step = 0
            while live:
                kwargs = {arg: cache} if cache is not None else {}
                out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                            position_ids=positions.to(device), use_cache=True, logits_to_keep=1, **kwargs)
                cache = _out_cache(out, arg)
                picked = out.logits[:, -1].argmax(-1).tolist()
                step += 1
                keep = []
                for b, r in enumerate(live):
                    t = picked[b]
                    done = t in eos
                    if not done:
                        new[r].append(t)
                        done = len(new[r]) >= budgets[rows[r]]
                        if not done and (until != "none" or stop_when is not None):
                            text = tok.decode(new[r], skip_special_tokens=True)
                            check = stop_when[rows[r]] if stop_when is not None else None
                            done = _finished(text, until) or (check is not None and check(text))
                    if not done:
                        keep.append(b)
                if not keep:
                    break
                if len(keep) < len(live):
                    cache.batch_select_indices(torch.tensor(keep, device=device))
                    mask, nxt_pos = mask[keep], nxt_pos[keep]
                    picked = [picked[b] for b in keep]
                    live = [live[b] for b in keep]
                input_ids = torch.tensor(picked, dtype=torch.long).unsqueeze(1)
                mask = torch.cat([mask, torch.ones((len(live), 1), dtype=torch.long)], dim=1)
                positions = nxt_pos.unsqueeze(1).clone()
                nxt_pos = nxt_pos + 1
            for r, i in enumerate(rows):
                results[i] = new[r]
    return results


def complete_many(bundle, prompts: Sequence[str], max_new_tokens: int | Sequence[int] = 8, *, until: str = "none",
                  batch_size: int = 32, stop_when: Sequence[Callable[[str], bool] | None] | None = None,
                  prefix_cache: dict | None = None) -> list[str]:
    """Decoded greedy continuations of `prompts` (see `greedy_many`)."""
    tok = bundle.tokenizer
    return [tok.decode(t, skip_special_tokens=True)
            for t in greedy_many(bundle, prompts, max_new_tokens, until=until, batch_size=batch_size,
                                 stop_when=stop_when, prefix_cache=prefix_cache)]


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
    from kedit.layer import _clean_answer

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
        linked[subject] = store.link_entity(subject) or subject
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


def _names_in(question: str, decision) -> list[str]:
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
    has_passages = layer.store.stats()["passages"] > 0
    states = []
    for question in questions:
        s = _State(question, time.perf_counter())
        s.scope = layer.scope.decide(question, as_of=as_of)
        _scope_slots(s, pool, question)
        if has_passages:  # a passage is in scope when it names what the question is about
            names = [_norm(n) for n in _names_in(question, s.scope)]
            s.passages = [p for p in layer.store.search(question, k=k, as_of=as_of, kinds=("passage",))
                          if any(n and n in _norm(p.text) for n in names)]
        states.append(s)
    # a one-hop question with nothing in scope (no stored fact, passage or instruction) cannot use the
    # store: it goes straight to the empty knowledge base instead of being walked here first
    direct = [] if closed_book or instructions else [
        i for i, s in enumerate(states) if len(s.slots) <= 1 and not s.allowed and not s.passages]
    if direct:
        closed = answer_questions(layer.closed_book_view(), [questions[i] for i in direct], as_of=as_of, k=k,
                                  max_new_tokens=max_new_tokens, closed_book=True)
        out_of_scope = dict(zip(direct, closed))
        for i, answer in out_of_scope.items():
            answer.trace["scope"] = states[i].scope.to_dict()
            answer.trace["closed_book"] = "nothing in scope: answered as with an empty knowledge base"
        states = [s for i, s in enumerate(states) if i not in out_of_scope]
        if not states:
            return [out_of_scope[i] for i in range(len(questions))]
        rest = answer_questions(layer, [s.question for s in states], instructions=instructions, as_of=as_of, k=k,
                                max_new_tokens=max_new_tokens)
        walked = iter(rest)
        return [out_of_scope[i] if i in out_of_scope else next(walked) for i in range(len(questions))]
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
    return done


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
