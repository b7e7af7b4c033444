"""Reading statements and naming stored entities on real records (CounterFact, ZsRE, MQuAKE samples in
tests/data): where a statement's subject ends, and which stored name a paraphrase names in part."""

from __future__ import annotations

import pytest

from benchmarks.data.loaders import load_mquake
from benchmarks.data.scope_data import counterfact_cases, distinct_subjects, zsre_cases
from graph import EntityLinker
from kedit.scope import learned_relation
from kedit.scope.text import relation_template
from kedit.statements import parse_statements
from memory import RelationVocabulary

BUILTIN = RelationVocabulary.builtin()


def _linker(names):
    linker = EntityLinker()
    for name in names:
        linker.add(name)
    return linker


def _read(items):
    """(subject, object) read from each (subject, relation, sentence) with the subjects as the store's names."""
    linker = _linker(s for s, _, _ in items)
    out = []
    for _, relation, sentence in items:
        found = parse_statements(sentence, [*BUILTIN, relation], linker.candidates)
        out.append((found[0].subject, found[0].object) if len(found) == 1 else None)
    return out


@pytest.fixture(scope="module")
def zsre(data_dir):
    return [
        c
        for c in distinct_subjects(zsre_cases(data_dir / "KnowEdit" / "ZsRE" / "ZsRE-test-dev.json"))
        if c.old
    ]


def _instruction(case):
    return f"Assume that {case.prompt.rstrip('?').rstrip()} {case.old}."


def test_a_template_ending_at_the_subject_takes_the_longest_stored_name(zsre):
    """ "What was the founding year of {}" + "Sigil Games Online 2002": the subject is the stored name, not
    the shortest span ("Sigil"); every ZsRE sample instruction reads as (subject, old value)."""
    items = [
        (c.subject, learned_relation(relation_template(c.prompt, c.subject)), _instruction(c)) for c in zsre
    ]
    assert _read(items) == [(c.subject, c.old) for c in zsre]
    sigil = next(i for i, c in enumerate(zsre) if c.subject == "Sigil Games Online")
    subject, relation, sentence = items[sigil]
    assert [(s.subject, s.object) for s in parse_statements(sentence, [relation])] == [
        ("Sigil", "Games Online 2002")
    ]
    assert _read(items)[sigil] == ("Sigil Games Online", "2002")


def test_a_possessive_subject_is_read_without_its_s(zsre, data_dir):
    mechthildis = next(c for c in zsre if c.subject == "Archduchess Mechthildis of Austria")
    relation = learned_relation(
        relation_template(mechthildis.prompt, mechthildis.subject)
    )  # "Who is {}'s father?"
    assert _read([(mechthildis.subject, relation, _instruction(mechthildis))]) == [
        ("Archduchess Mechthildis of Austria", "Archduke Charles Stephen of Austria")
    ]
    # a built-in relation stated of a possessive: the bare stored name is the subject
    cf = distinct_subjects(counterfact_cases(data_dir / "CounterFact" / "counterfact-val.json"))[:20]
    mother_tongue = BUILTIN.resolve("P103")
    items = [(c.subject, mother_tongue, f"The mother tongue of {c.subject}'s is {c.target}.") for c in cf]
    assert _read(items) == [(c.subject, c.target) for c in cf]


def test_counterfact_and_mquake_statements_read_their_stored_subject(data_dir):
    cf = [
        c
        for c in distinct_subjects(counterfact_cases(data_dir / "CounterFact" / "counterfact-val.json"))
        if c.old
    ]
    items = [
        (
            c.subject,
            learned_relation(relation_template(c.prompt, c.subject)),
            f"Assume that {c.prompt} {c.old}.",
        )
        for c in cf
    ]
    assert _read(items) == [(c.subject, c.old) for c in cf]
    seen, items, expected = set(), [], []
    for case in load_mquake(data_dir / "MQuAKE", limit=100).cases:
        for rw in case.requested_rewrite:
            if rw.relation_id in BUILTIN and rw.subject not in seen and "Inc." not in rw.subject:
                seen.add(rw.subject)
                relation = BUILTIN.resolve(rw.relation_id)
                # "is located in the continent" wins over "is located in": the most specific template
                items.append((rw.subject, relation, relation.render(rw.subject, rw.target_true)))
                expected.append((rw.subject, rw.target_true))
    assert len(items) > 50 and _read(items) == expected


def test_a_paraphrase_naming_a_stored_name_in_part_links_to_it_and_no_other(zsre, data_dir):
    linker = _linker(c.subject for c in zsre)
    spelt_otherwise = [c for c in zsre if not linker.spans(c.in_scope[1])]
    assert len(spelt_otherwise) >= 3  # "Who was Archduchess Mechthildi's Austrian father?", "Thomas's tanker"
    linked = {
        c.subject: [n for _, _, names in linker.partial_spans(c.in_scope[1]) for n in names]
        for c in spelt_otherwise
    }
    assert linked["Archduchess Mechthildis of Austria"] == ["Archduchess Mechthildis of Austria"]
    assert linked["Thomas the Tank Engine"] == ["Thomas the Tank Engine"]
    assert all(names in ([], [subject]) for subject, names in linked.items())  # never another stored name
    # other subjects' prompts (CounterFact's neighbourhood) and MQuAKE's questions that name no stored
    # subject whole name none in part either
    cf = distinct_subjects(counterfact_cases(data_dir / "CounterFact" / "counterfact-val.json"))
    cf_linker = _linker(c.subject for c in cf)
    assert not [
        p for c in cf for p in c.other_subject if not cf_linker.spans(p) and cf_linker.partial_spans(p)
    ]
    cases = load_mquake(data_dir / "MQuAKE", limit=100).cases
    mq_linker = _linker(rw.subject for case in cases for rw in case.requested_rewrite)
    unlinked = [q for case in cases for q in case.questions if not mq_linker.spans(q)]
    assert unlinked and not [q for q in unlinked if mq_linker.partial_spans(q)]


def test_the_store_index_built_in_one_pass_links_as_names_added_one_by_one(data_dir, tmp_path):
    from memory import NewFact, Record

    records = counterfact_cases(data_dir / "CounterFact" / "counterfact-train.json")
    one_by_one, at_once = EntityLinker(), EntityLinker()
    names = [n for c in records for n in (c.subject, c.target)] + [
        "  The  Beatles ",
        "IS",
        "HR",
        "the",
        "ﬁsh Ⅻ",
    ]
    for name in names:
        one_by_one.add(name)
    at_once.add_names(names)
    assert at_once.candidates("the beatles") == ["  The  Beatles "] and at_once.candidates("HR") == ["HR"]
    assert at_once.candidates("is") == [] == at_once.candidates("hr")  # a function word; a short name by case
    assert all(at_once.candidates(c.subject) == one_by_one.candidates(c.subject) for c in records)
    assert at_once.spans("What is the twin city of fish Xii?") == one_by_one.spans(
        "What is the twin city of fish Xii?"
    )
    # the record gives the live facts' subjects and objects once each, in order of first use
    record = Record.open(tmp_path / "record.sqlite")
    facts = record.add_facts([NewFact(c.subject, "P27", c.target) for c in records[:5]])
    record.tombstone_facts([facts[0].id])
    expected = dict.fromkeys(n for c in records[1:5] for n in (c.subject, c.target))
    assert record.names() == list(expected)
    record.close()
