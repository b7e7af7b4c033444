"""kedit.store.KnowledgeStore end to end on real facts (MQuAKE, CounterFact) with real MiniLM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import memory
from graph import read_triples
from kedit.errors import StoreError
from kedit.store import (
    KnowledgeStore,
    ReadOnlyStoreError,
    StoreInputError,
    StoreLockedError,
    StoreNotFoundError,
    StorePathError,
    UnknownRelationError,
    store_name_path,
)
from kedit.store.datasets import counterfact_cases, mquake_cases, mquake_facts
from retrieval import ids_checksum

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mquake(data_dir):
    path = data_dir / "MQuAKE" / "MQuAKE-CF-3k-dev.json"
    facts, aliases = mquake_facts(path, limit=40)
    return mquake_cases(path, 40), facts, aliases


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, embedder, mquake, data_dir):
    """A store with 40 MQuAKE cases (world facts + edits) and 60 CounterFact facts."""
    _, facts, aliases = mquake
    store = KnowledgeStore.open(tmp_path_factory.mktemp("kb") / "store", embedder)
    store.add_facts(facts)
    for canonical, names in aliases.items():
        store.add_aliases(canonical, names)
    cases = counterfact_cases(data_dir / "CounterFact" / "counterfact-val.json", limit=60)
    store.add_facts(c.fact for c in cases)
    yield store, cases
    store.close()


def test_edits_supersede_and_are_found_by_their_questions(loaded, mquake):
    store, _ = loaded
    cases, _, _ = mquake
    found = 0
    for case in cases:
        rewrite = case["requested_rewrite"][0]
        current = store.current(rewrite["subject"], rewrite["relation_id"])
        assert current is not None and current.object == rewrite["target_new"]["str"]
        assert current.source == "mquake-edit"
        hits = store.search(rewrite["question"], k=3, kinds=("fact",))
        found += any(h.fact.id == current.id for h in hits)
        if store.relations.resolve(rewrite["relation_id"]).functional:  # the old value is out of search
            old = {
                f.id for f in store.history(rewrite["subject"], rewrite["relation_id"]) if f.id != current.id
            }
            assert old and all(h.fact.id not in old for h in hits)
    assert found / len(cases) >= 0.9, found / len(cases)


def test_chain_neighbours_and_path_use_current_facts(loaded, mquake):
    store, _ = loaded
    cases, _, _ = mquake
    reached = 0
    for case in cases:
        start = case["orig"]["new_triples_labeled"][0][0]
        walk = store.chain(start, [t[1] for t in case["orig"]["new_triples"]])
        reached += bool(walk) and walk[-1].object == case["new_answer"]
    assert reached / len(cases) >= 0.9, reached / len(cases)
    subject, _, new_country = cases[0]["orig"]["new_triples_labeled"][0]
    assert new_country in {f.object for f in store.neighbours(subject)}
    old_country = cases[0]["orig"]["triples_labeled"][0][2]
    assert old_country not in {f.object for f in store.neighbours(subject)}  # superseded: not current
    head = cases[0]["orig"]["new_triples_labeled"][1][2]
    assert [f.subject for f in store.path(subject, head)] == [subject, new_country]
    assert store.link_entity("the USA") == "United States of America"


def _stored_vectors(store):
    return {
        int(i): v
        for ids, batch in store.record.iter_vectors("fact", store.model_name)
        for i, v in zip(ids, batch)
    }


def test_pipelined_insert_matches_plain_batches_and_reuses_vectors(tmp_path, embedder, data_dir):
    facts = [
        c.fact for c in counterfact_cases(data_dir / "CounterFact" / "counterfact-train.json", limit=230)
    ]
    n = len(facts)  # the tests/data sample: every record that makes a case, up to 230
    assert n > 150
    facts += facts[5:8]  # repeated sentences: embedded once, and the second time found in the store
    with (
        KnowledgeStore.open(tmp_path / "plain", embedder) as plain,
        KnowledgeStore.open(tmp_path / "piped", embedder) as piped,
    ):
        ids = [
            f.id for start in range(0, len(facts), 100) for f in plain.add_facts(facts[start : start + 100])
        ]
        assert [f.id for f in piped.add_facts_in_batches(facts, batch_size=100)] == ids
        want, got = _stored_vectors(plain), _stored_vectors(piped)
        assert want.keys() == got.keys() == set(ids)
        assert all(np.array_equal(want[i], got[i]) for i in ids)  # bit-identical, not just close
        assert np.array_equal(got[ids[5]], got[ids[n]])
        assert piped.search(facts[7].sentence, k=1)[0].id in (ids[7], ids[n + 2])
        before = piped.stats()
        with pytest.raises(StoreInputError, match="object is empty"):  # validated before any batch is written
            piped.add_facts_in_batches(facts[:150] + [("Ellie Kemper", "P27", "  ")], batch_size=100)
        assert piped.stats() == before
    # the store's embedder (batches side by side) agrees with plain sentence-transformers encode
    texts = [f.sentence for f in facts[:80]]
    threads = torch.get_num_threads()
    reference = embedder.model.encode(
        texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False
    )
    assert np.abs(embedder.encode(texts) - reference).max() < 1e-5
    assert torch.get_num_threads() == threads  # the worker threads' setting does not leak into the caller


def test_time_validity_forget_and_update(tmp_path, embedder):
    with KnowledgeStore.open(tmp_path / "s", embedder) as store:
        store.add_fact("Croatia", "P35", "Ivo Josipović", valid_from="2010-02-18", valid_to="2015-02-19")
        store.add_fact("Croatia", "head of state", "Kolinda Grabar-Kitarović", valid_from="2015-02-19")
        assert store.current("Croatia", "P35", as_of="2012-01-01").object == "Ivo Josipović"
        assert store.current("Croatia", "P35").object == "Kolinda Grabar-Kitarović"
        hits = store.search("Who is the head of state of Croatia?", k=2, as_of="2012-01-01")
        assert hits[0].fact.object == "Ivo Josipović"
        assert "Ivo Josipović" not in [h.fact.object for h in store.search("head of state of Croatia", k=2)]
        fact = store.add_fact("Toko Yasuda", "P1303", "guitar", source="counterfact")
        moved = store.update_fact(fact.id, object="piano")
        assert moved.id == fact.id and store.revisions(fact.id)[0]["object"] == "guitar"
        assert store.search("Which instrument does Toko Yasuda play?", k=1)[0].fact.object == "piano"
        gone = store.forget("Toko Yasuda")
        assert [f.id for f in gone] == [fact.id] and store.forget("Toko Yasuda") == []
        assert all(
            h.fact is None or h.fact.id != fact.id for h in store.search("Toko Yasuda instrument", k=5)
        )
        assert store.history("Toko Yasuda")[0].deleted
        with pytest.raises(StoreNotFoundError):
            store.delete_fact(fact.id)
        entry = store.record_edit(decision="store-only", reasons=["low confidence"], fact_id=fact.id)
        assert store.edits(fact.id) == [entry] == store.ledger


def test_documents_are_split_searched_and_time_filtered(tmp_path, embedder, data_dir):
    text = (data_dir / "text-corpus" / "wikitext-2" / "valid.txt").read_text(encoding="utf-8")[:6000]
    with KnowledgeStore.open(tmp_path / "s", embedder) as store:
        passages = store.add_document(text, source="wikitext", valid_to="2030-01-01")
        assert len(passages) >= 5 and all(len(p.text) <= 600 for p in passages)
        target = passages[3]
        hits = store.search(target.text[:200], k=3, kinds=("passage",))
        assert hits[0].passage.id == target.id and hits[0].source == "wikitext"
        assert store.search(target.text[:200], k=3, as_of="2031-01-01", kinds=("passage",)) == []
        store.delete_document(target.document_id)
        assert store.search(target.text[:200], k=3, kinds=("passage",)) == []


def test_indexes_are_rebuilt_when_missing_stale_or_corrupt(tmp_path, embedder):
    root = tmp_path / "s"
    with KnowledgeStore.open(root, embedder) as store:
        store.add_facts([("Ellie Kemper", "P27", "Croatia"), ("Croatia", "P35", "Kolinda Grabar-Kitarović")])
    with KnowledgeStore.open(root, embedder) as store:
        assert store.rebuilt == []
    (root / "vectors" / "fact.faiss").unlink()
    with KnowledgeStore.open(root, embedder) as store:
        assert store.rebuilt == ["vectors:fact"]
    raw = bytearray((root / "vectors" / "fact.faiss").read_bytes())
    raw[-10] ^= 0xFF
    (root / "vectors" / "fact.faiss").write_bytes(bytes(raw))
    with KnowledgeStore.open(root, embedder) as store:
        assert store.rebuilt == ["vectors:fact"]
    record = memory.Record.open(root / "record.sqlite")  # a write the indexes never saw
    record.add_facts([memory.NewFact("Ellie Kemper", "P19", "Chicago")])
    record.close()
    (root / "graph" / "stamp.json").write_text("garbage")
    with KnowledgeStore.open(root, embedder) as store:
        assert store.rebuilt == ["vectors:fact", "vectors:passage", "graph"]
        assert store.search("Where was Ellie Kemper born?", k=1)[0].fact.object == "Chicago"
        assert store.chain("Ellie Kemper", ["P19"])[0].object == "Chicago"
        assert len(store.sparql("SELECT ?s ?p ?o WHERE { GRAPH ?g { ?s ?p ?o } }")) >= 3
        assert store.rebuild_indexes() == ["vectors:fact", "vectors:passage", "graph"]


def test_export_and_import_round_trip(tmp_path, embedder, loaded):
    store, _ = loaded
    store.forget("Ellie Kemper", "P27")
    out = store.export(tmp_path / "export", graph_format="turtle")
    rows = [json.loads(line) for line in (out / "record.jsonl").read_text().splitlines()]
    assert sum(r["type"] == "fact" for r in rows) == len(store.history())
    with KnowledgeStore.open(tmp_path / "copy", embedder) as copy:
        copy.import_(out)
        key = lambda f: (f.subject, f.relation, f.object, f.source, f.deleted)  # noqa: E731
        assert sorted(map(key, copy.history())) == sorted(map(key, store.history()))
        assert copy.current("Ellie Kemper", "P27") is None
    triples = read_triples(out / "graph.ttl")
    assert len(triples) == len({(f.subject, f.relation, f.object) for f in store.facts()})
    with KnowledgeStore.open(tmp_path / "from-rdf", embedder) as third:
        third.import_(out / "graph.ttl", source="rdf")
        assert len(third.facts()) == len(triples)


BAD = [
    (dict(subject=""), StoreInputError, "subject is empty"),
    (dict(subject="x" * 100_000), StoreInputError, "at most 500"),
    (dict(subject=b"Ellie \xc3\x28 Kemper"), StoreInputError, "not valid UTF-8"),
    (dict(object="Croatia\x00"), StoreInputError, "control character"),
    (dict(sentence="  "), StoreInputError, "sentence is empty"),
    (dict(relation="citizenship of"), UnknownRelationError, "unknown relation"),
    (dict(valid_from="2020-01-01", valid_to="2019-12-31"), StoreInputError, "must be after"),
    (dict(source="a\nb"), StoreInputError, "control character"),
]


@pytest.mark.parametrize(("override", "error", "message"), BAD, ids=[m for _, _, m in BAD])
def test_bad_input_gives_clear_errors_and_changes_nothing(tmp_path, embedder, override, error, message):
    with KnowledgeStore.open(tmp_path / "s", embedder) as store:
        store.add_fact("Ellie Kemper", "P27", "United States of America")
        before = (store.stats(), store.history())
        fields = dict(subject="Ellie Kemper", relation="P27", object="Croatia") | override
        with pytest.raises(error, match=message) as caught:
            store.add_fact(fields.pop("subject"), fields.pop("relation"), fields.pop("object"), **fields)
        assert isinstance(caught.value, StoreError)
        assert (store.stats(), store.history()) == before


def test_injection_attempts_are_plain_names(tmp_path, embedder):
    names = ['Bob"> ; DROP ALL ; <urn:x>', "O'Brien } INSERT DATA { <a> <b> <c> }", "<script>&amp;"]
    with KnowledgeStore.open(tmp_path / "s", embedder) as store:
        for name in names:
            store.add_fact(name, "P19", name)
        rows = store.sparql(
            "SELECT DISTINCT ?name ?s WHERE { GRAPH ?g { ?s ?p ?o . ?s <http://www.w3.org/2000/01/rdf-schema#label> ?name } }",
            {"name": names[0]},
        )
        assert len(rows) == 1
        assert store.stats()["graph_statements"] == 3
        assert [f.subject for f in store.facts()] == names
        with pytest.raises(StoreInputError, match="query is empty"):
            store.search("   ")


def test_store_paths_refuse_traversal(tmp_path):
    for bad in ["../escape", "a/../../b", "x\x00y", ""]:
        with pytest.raises(StorePathError):
            KnowledgeStore.open(tmp_path / bad if bad and "\x00" not in bad else bad)
    for bad in ["../etc", "a/b", ".hidden", "", "x" * 65]:
        with pytest.raises(StorePathError):
            store_name_path(bad, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorePathError, match="not a directory"):
        KnowledgeStore.open(tmp_path / "file")
    assert store_name_path("facts-2024", tmp_path) == (tmp_path / "facts-2024").resolve()
    with pytest.raises(StoreNotFoundError):
        KnowledgeStore.open(tmp_path / "absent", read_only=True)


def test_second_writer_is_refused_and_readers_are_read_only(tmp_path, embedder):
    with KnowledgeStore.open(tmp_path / "s", embedder) as store:
        store.add_fact("Ellie Kemper", "P27", "Croatia")
        with pytest.raises(StoreLockedError, match="open for writing"):
            KnowledgeStore.open(tmp_path / "s", embedder)
        with KnowledgeStore.open(tmp_path / "s", embedder, read_only=True) as reader:
            assert reader.current("Ellie Kemper", "P27").object == "Croatia"
            with pytest.raises(ReadOnlyStoreError):
                reader.add_fact("A", "P27", "B")


WRITER = """
import sys
from kedit.store import KnowledgeStore
store = KnowledgeStore.open(sys.argv[1])
print("ready", flush=True)
for i in range(1000):
    fact = store.add_fact(f"Person {i}", "P19", f"City {i % 37}", source="crash-test")
    print(fact.id, flush=True)
store.close()
"""


def test_sigkill_mid_writes_loses_nothing_acknowledged_while_a_reader_reads(tmp_path, embedder):
    root = tmp_path / "s"
    KnowledgeStore.open(root, embedder).close()
    env = os.environ | {"PYTHONPATH": str(REPO)}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True, cwd=REPO, env=env
    )
    acknowledged: list[int] = []
    reader = KnowledgeStore.open(root, embedder, read_only=True)
    reads = 0
    try:
        assert writer.stdout.readline().strip() == "ready"
        while len(acknowledged) < 100:
            line = writer.stdout.readline()
            assert line, "writer exited early"
            acknowledged.append(int(line))
            if len(acknowledged) % 20 == 0:  # the reader keeps working while the writer writes
                reader.refresh()
                assert len(reader.facts()) >= len(acknowledged)
                assert reader.search("Where was Person 3 born?", k=1)
                reads += 1
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        reader.close()
    assert reads == 5
    with KnowledgeStore.open(root, embedder) as store:
        assert {"vectors:fact", "graph"} <= set(store.rebuilt)
        facts = {f.id: f for f in store.facts()}
        assert set(acknowledged) <= set(facts)
        for fact_id in acknowledged:
            assert facts[fact_id].subject == f"Person {fact_id - 1}" and facts[fact_id].source == "crash-test"
        assert ids_checksum(store._indexes["fact"].ids()) == ids_checksum(list(facts))
        assert store.stats()["graph_statements"] == len(facts)
        assert store.search("Where was Person 42 born?", k=1)[0].fact.subject == "Person 42"
    start = time.monotonic()
    KnowledgeStore.open(root, embedder).close()
    assert time.monotonic() - start < 5
