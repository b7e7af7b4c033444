"""memory: the SQLite system of record (no embeddings needed)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from kedit.store.datasets import mquake_cases, mquake_facts
from memory import (
    InvalidInputError,
    NewFact,
    NotFoundError,
    ReadOnlyError,
    Record,
    Relation,
    RelationVocabulary,
    SchemaError,
    UnknownRelationError,
    WriterLockedError,
)
from memory.schema import MIGRATIONS


@pytest.fixture()
def record(tmp_path):
    rec = Record.open(tmp_path / "record.sqlite")
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def mquake(data_dir):
    path = data_dir / "MQuAKE" / "MQuAKE-CF-3k-dev.json"
    return path, mquake_facts(path, limit=80)[0]


def test_vocabulary_covers_the_mquake_templates(data_dir):
    vocab = RelationVocabulary.builtin()
    prompts = data_dir / "MQuAKE" / "prompts"
    cloze = json.loads((prompts / "templates" / "cloze_templates.json").read_text())
    questions = json.loads((prompts / "templates" / "question_templates.json").read_text())
    few_shot = json.loads((prompts / "rel-prompts.json").read_text())
    for pid, template in cloze.items():
        relation = vocab.resolve(pid)
        assert relation.cloze == template.replace("[X]", "{}").removesuffix(" __").strip()
        assert relation.question == questions[pid].replace("[X]", "{}")
        assert relation.few_shot == few_shot.get(pid, "")
    assert {"P101", "P103", "P1303", "P39", "P138"} <= {r.id for r in vocab}
    assert vocab.resolve("country of citizenship").id == "P27"
    assert vocab.resolve("P27").functional and not vocab.resolve("P40").functional
    with pytest.raises(UnknownRelationError, match="did you mean"):
        vocab.resolve("P2700")


def test_write_is_committed_before_it_returns(tmp_path):
    rec = Record.open(tmp_path / "r.sqlite")
    fact = rec.add_facts([NewFact("Ellie Kemper", "P27", "Croatia")])[0]
    other = sqlite3.connect(tmp_path / "r.sqlite")  # a second connection sees it at once
    assert other.execute("SELECT object FROM facts WHERE id = ?", (fact.id,)).fetchone() == ("Croatia",)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    other.close()
    rec.close()


def test_supersession_as_of_and_history_on_mquake_edits(record, mquake):
    path, facts = mquake
    record.add_facts(facts)
    edits = [f for f in facts if f.source == "mquake-edit"]
    assert edits
    for edit in edits:
        current = record.current(edit.subject, edit.relation)
        assert current is not None and current.object == edit.object
        history = record.history(edit.subject, edit.relation)
        assert [f.source for f in history][-1] == "mquake-edit"
    case = mquake_cases(path, 1)[0]
    (subject, _, old), (_, _, new) = (
        case["orig"]["triples_labeled"][0],
        case["orig"]["new_triples_labeled"][0],
    )
    assert [f.object for f in record.history(subject, "P27")] == [old, new]
    assert [f.object for f in record.facts(subject, "P27", include_superseded=False)] == [new]


def test_valid_time_decides_as_of(record):
    record.add_facts(
        [
            NewFact("Croatia", "P35", "Stjepan Mesić", valid_from="2000-02-18", valid_to="2010-02-18"),
            NewFact("Croatia", "P35", "Ivo Josipović", valid_from="2010-02-18", valid_to="2015-02-19"),
            NewFact("Croatia", "P35", "Kolinda Grabar-Kitarović", valid_from="2015-02-19"),
        ]
    )
    assert record.current("Croatia", "P35", as_of="2005-06-01").object == "Stjepan Mesić"
    assert record.current("Croatia", "head of state", as_of="2012").object == "Ivo Josipović"
    assert record.current("Croatia", "P35").object == "Kolinda Grabar-Kitarović"
    assert record.current("Croatia", "P35", as_of="1990") is None
    assert len(record.history("Croatia", "P35")) == 3


def test_update_keeps_revisions_and_tombstones_stay_in_history(record):
    fact = record.add_facts([NewFact("Toko Yasuda", "P1303", "guitar")])[0]
    updated = record.update_fact(fact.id, {"object": "piano"})
    assert updated.id == fact.id and updated.sentence == "Toko Yasuda plays the instrument piano."
    assert record.revisions(fact.id)[0]["object"] == "guitar"
    gone = record.tombstone_facts([fact.id])
    assert gone[0].deleted and record.facts("Toko Yasuda") == []
    assert record.facts("Toko Yasuda", include_deleted=True)[0].deleted_at == gone[0].deleted_at
    with pytest.raises(InvalidInputError, match="forgotten"):
        record.update_fact(fact.id, {"object": "drums"})
    with pytest.raises(NotFoundError):
        record.get_fact(9999)


BAD_FACTS = [
    (NewFact("", "P27", "Croatia"), "subject is empty"),
    (NewFact("x" * 100_000, "P27", "Croatia"), "at most 500"),
    (NewFact(b"\xff\xfeKemper", "P27", "Croatia"), "not valid UTF-8"),
    (NewFact("Ellie\nKemper", "P27", "Croatia"), "control character"),
    (NewFact("Ellie Kemper", "P27", "Croatia", sentence="s" * 100_000), "at most 4000"),
    (NewFact("Ellie Kemper", "P9999", "Croatia"), "unknown relation"),
    (
        NewFact("Ellie Kemper", "P27", "Croatia", valid_from="2020-01-01", valid_to="2019-01-01"),
        "must be after",
    ),
    (NewFact("Ellie Kemper", "P27", "Croatia", valid_from="last tuesday"), "not an ISO-8601"),
    (NewFact("Ellie Kemper", "P27", "Croatia", confidence=1.5), "confidence"),
    (NewFact("Ellie Kemper", "P27", "Croatia", provenance={"x": object()}), "JSON"),
]


@pytest.mark.parametrize(("fact", "message"), BAD_FACTS, ids=[m for _, m in BAD_FACTS])
def test_bad_input_is_refused_and_nothing_changes(record, fact, message):
    record.add_facts([NewFact("Ellie Kemper", "P27", "United States of America")])
    before = (record.version, record.count(), record.history())
    with pytest.raises(InvalidInputError, match=message):
        record.add_facts([NewFact("Someone", "P27", "Spain"), fact])  # one bad fact spoils the batch
    assert (record.version, record.count(), record.history()) == before


def test_names_with_special_characters_are_stored_verbatim(record):
    names = ['Bob "> ; DROP TABLE facts; --', "O'Brien <script>", "a\tb", "Zürich {} \\ ]] >"]
    for name in names[:2] + names[3:]:
        fact = record.add_facts([NewFact(name, "P19", name)])[0]
        assert record.get_fact(fact.id).subject == name
    with pytest.raises(InvalidInputError, match="control character"):
        record.add_facts([NewFact(names[2], "P19", "x")])
    assert record.count() == 3


def test_one_writer_at_a_time_and_readers_beside_it(tmp_path):
    path = tmp_path / "r.sqlite"
    writer = Record.open(path)
    with pytest.raises(WriterLockedError, match="open for writing"):
        Record.open(path)
    reader = Record.open(path, read_only=True)
    writer.add_facts([NewFact("Ellie Kemper", "P27", "Croatia")])
    assert reader.count() == 1
    with pytest.raises(ReadOnlyError):
        reader.add_facts([NewFact("A", "P27", "B")])
    writer.close()
    Record.open(path).close()  # the lock is free again
    reader.close()


def test_custom_relations_persist_and_schema_is_checked(tmp_path):
    path = tmp_path / "r.sqlite"
    rec = Record.open(path)
    rec.register_relation(
        Relation(
            "X1",
            "favourite food",
            "The favourite food of {} is",
            "What does {} like to eat?",
            functional=False,
        )
    )
    rec.add_facts([NewFact("Ellie Kemper", "favourite food", "pasta")])
    rec.close()
    rec = Record.open(path)
    assert rec.facts(relation="X1")[0].sentence == "The favourite food of Ellie Kemper is pasta."
    with pytest.raises(InvalidInputError, match="one '{}'"):
        Relation("X2", "bad", "no placeholder", "Who {}?")
    rec.close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(SchemaError, match="newer"):
        Record.open(path)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(SchemaError):
        Record.open(tmp_path / "junk.sqlite")


def test_ledger_and_evidence_sessions_round_trip(record):
    from memory import EvidenceRound

    fact = record.add_facts([NewFact("Ellie Kemper", "P27", "Croatia", source="edit")])[0]
    entry = record.record_edit(
        decision="both",
        reasons=["functional relation", "high confidence"],
        fact_id=fact.id,
        edit_id="memit-0007",
        details={"layer": 5},
    )
    assert record.edits(fact.id) == [entry] and entry.reasons[0] == "functional relation"
    with pytest.raises(NotFoundError):
        record.record_edit(decision="store", fact_id=12345)
    rounds = [EvidenceRound(1, ["q"], [{"kind": "fact", "id": fact.id}], [{"relation": "P27"}], 1)]
    saved = record.save_session(
        "Which country is Ellie Kemper a citizen of?", [{"relation": "P27"}], True, rounds
    )
    assert record.session(saved.id) == saved
