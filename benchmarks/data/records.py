"""One on-disk record to one case: KnowEdit-style records (every kind of `benchmarks.data.loaders`) to
`EditCase`, MQuAKE records to `MQuAKECase`. A record that does not fit its format raises `RecordError`
(the loader reports and skips it)."""

from __future__ import annotations

from typing import Any

from benchmarks.data.cases import QA, EditCase, Hop, MQuAKECase, Rewrite


class RecordError(ValueError):
    """One record does not fit its format (the message is the reason)."""


# ---------------------------------------------------------------- field helpers


def _str(rec: dict, key: str, *, allow_empty: bool = False) -> str:
    value = rec.get(key)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        value = value[0]
    if not isinstance(value, str):
        raise RecordError(f"field '{key}' missing or not a string")
    if not allow_empty and not value.strip():
        raise RecordError(f"field '{key}' is empty")
    return value


def _flatten(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _flatten(v)]
    return []


def _answers(value: Any) -> tuple[str, ...]:
    """Aliases in order; empty if EasyEdit's first alias is missing or blank (the probe is dropped)."""
    first = value
    while isinstance(first, list):
        if not first:
            return ()
        first = first[0]
    if not isinstance(first, str) or not first.strip():
        return ()
    seen: list[str] = []
    for s in _flatten(value):
        if s.strip() and s not in seen:
            seen.append(s)
    return tuple(seen)


def _probes(section: Any, name: str) -> dict[str, tuple[QA, ...]]:
    """`{"Key": [{"prompt", "ground_truth"}, ...]}` -> {key: QA probes}; keys without probes are dropped."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise RecordError(f"'{name}' is not an object")
    out: dict[str, tuple[QA, ...]] = {}
    for key, items in section.items():
        if not isinstance(items, list):
            raise RecordError(f"'{name}.{key}' is not a list")
        probes = []
        for item in items:
            if not isinstance(item, dict):
                raise RecordError(f"'{name}.{key}' holds a non-object item")
            prompt = item.get("prompt")
            if isinstance(prompt, list):
                prompt = prompt[0] if prompt else None
            if not isinstance(prompt, str) or not prompt.strip():
                raise RecordError(f"'{name}.{key}' item without a prompt")
            answers = _answers(item.get("ground_truth"))
            if answers:
                probes.append(QA(prompt, answers))
        if probes:
            out[key] = tuple(probes)
    return out


# ---------------------------------------------------------------- KnowEdit-style kinds


def edit_case(kind: str, rec: Any, case_id: str, source: str, index: int) -> EditCase:
    if not isinstance(rec, dict):
        raise RecordError("record is not an object")
    common = {"kind": kind, "case_id": case_id, "source": source, "index": index}
    if kind == "zsre-mend":
        return EditCase(
            prompt=_str(rec, "src"),
            subject=_str(rec, "subject"),
            target_new=_str(rec, "alt"),
            ground_truth=_answers(rec.get("answers")),
            rephrase=(_str(rec, "rephrase"),),
            locality={"neighborhood": (QA(_str(rec, "loc"), (_str(rec, "loc_ans"),)),)},
            **common,
        )
    if kind == "cf-easyedit":
        return EditCase(
            prompt=_str(rec, "prompt"),
            subject=_str(rec, "subject"),
            target_new=_str(rec, "target_new"),
            ground_truth=_answers(rec.get("ground_truth")),
            rephrase=(_str(rec, "rephrase_prompt"),),
            locality={
                "neighborhood": (QA(_str(rec, "locality_prompt"), (_str(rec, "locality_ground_truth"),)),)
            },
            **common,
        )
    if kind == "wikibio":
        return EditCase(
            prompt=_str(rec, "text"),
            subject=_str(rec, "concept"),
            target_new=_str(rec, "labels"),
            locality=_probes(rec.get("locality"), "locality"),
            **common,
        )
    # zsre / recent / counterfact (KnowEdit)
    rephrase = rec.get("rephrase_prompt")
    if kind == "zsre" and (not isinstance(rephrase, str) or not rephrase.strip()):
        raise RecordError("field 'rephrase_prompt' missing or empty")
    if "locality" not in rec:
        raise RecordError("field 'locality' missing")
    return EditCase(
        prompt=_str(rec, "prompt"),
        subject=_str(rec, "subject"),
        target_new=_str(rec, "target_new"),
        ground_truth=_answers(rec.get("ground_truth")),
        rephrase=(rephrase,) if isinstance(rephrase, str) and rephrase.strip() else (),
        locality=_probes(rec.get("locality"), "locality"),
        portability=_probes(rec.get("portability"), "portability"),
        **common,
    )


def mquake_case(rec: Any, source: str, index: int) -> MQuAKECase:
    if not isinstance(rec, dict):
        raise RecordError("record is not an object")

    def triples(key: str) -> tuple[tuple[str, str, str], ...]:
        value = orig.get(key)
        if not isinstance(value, list) or not all(
            isinstance(t, list) and len(t) == 3 and all(isinstance(x, str) for x in t) for t in value
        ):
            raise RecordError(f"'orig.{key}' is not a list of triples")
        return tuple((t[0], t[1], t[2]) for t in value)

    orig = rec.get("orig")
    if not isinstance(orig, dict):
        raise RecordError("field 'orig' missing")
    new_triples, old_triples, edit_triples = (
        triples("new_triples"),
        triples("triples"),
        triples("edit_triples"),
    )
    labeled = triples("new_triples_labeled") if "new_triples_labeled" in orig else ()

    rewrites = rec.get("requested_rewrite")
    if not isinstance(rewrites, list) or not rewrites:
        raise RecordError("'requested_rewrite' missing or empty")
    parsed_rw = []
    for rw in rewrites:
        if not isinstance(rw, dict) or not isinstance(rw.get("target_new"), dict):
            raise RecordError("'requested_rewrite' item malformed")
        prompt = _str(rw, "prompt")
        if "{}" not in prompt:
            raise RecordError("a requested_rewrite prompt has no '{}' for the subject")
        parsed_rw.append(
            Rewrite(
                prompt=prompt,
                subject=_str(rw, "subject"),
                target_new=_str(rw["target_new"], "str"),
                target_true=_str(rw.get("target_true") or {}, "str"),
                relation_id=_str(rw, "relation_id"),
                question=_str(rw, "question", allow_empty=True),
            )
        )

    def hops(key: str, chain: tuple[tuple[str, str, str], ...]) -> tuple[Hop, ...]:
        items = rec.get(key)
        if not isinstance(items, list) or len(items) != len(chain):
            raise RecordError(f"'{key}' missing or not one per triple of its chain")
        out = []
        for item, triple in zip(items, chain):
            if not isinstance(item, dict):
                raise RecordError(f"'{key}' holds a non-object item")
            aliases = item.get("answer_alias", [])
            out.append(
                Hop(
                    question=_str(item, "question"),
                    cloze=_str(item, "cloze"),
                    answer=_str(item, "answer"),
                    aliases=tuple(a for a in aliases if isinstance(a, str))
                    if isinstance(aliases, list)
                    else (),
                    triple=triple,
                    edited=triple in edit_triples and key == "new_single_hops",
                )
            )
        return tuple(out)

    questions = rec.get("questions")
    if not isinstance(questions, list) or not questions or not all(isinstance(q, str) for q in questions):
        raise RecordError("'questions' missing or not a list of strings")

    def alias_list(key: str) -> tuple[str, ...]:
        value = rec.get(key, [])
        if not isinstance(value, list):
            raise RecordError(f"'{key}' is not a list")
        return tuple(a for a in value if isinstance(a, str))

    case_id = rec.get("case_id", index)
    return MQuAKECase(
        case_id=str(case_id),
        requested_rewrite=tuple(parsed_rw),
        questions=tuple(questions),
        answer=_str(rec, "answer"),
        answer_alias=alias_list("answer_alias"),
        new_answer=_str(rec, "new_answer"),
        new_answer_alias=alias_list("new_answer_alias"),
        single_hops=hops("single_hops", old_triples),
        new_single_hops=hops("new_single_hops", new_triples),
        triples=old_triples,
        new_triples=new_triples,
        edit_triples=edit_triples,
        new_triples_labeled=labeled,
        source=source,
        index=index,
    )
