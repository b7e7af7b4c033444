"""Benchmark loaders on every file of the data sample (tests/data), malformed records, wrong-benchmark files, prompts,
run directories, the compare report and the CLI's checks before model work (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.cli import app
from benchmarks.data.loaders import KNOWEDIT_KINDS, BenchmarkDataError, load_knowedit, load_mquake
from benchmarks.data.prompts import load_mquake_prompts
from benchmarks.runners.compare import write_report
from benchmarks.runners.mquake import batch_facts, batches
from benchmarks.runners.runs import CASES, RunDir, RunDirError, RunSpec

# every data file of the sample (same names as the full data): (path relative to the data dir, kind,
# usable cases, malformed); tests/data/SOURCES.md says which records each keeps
EXPECTED = {
    "CounterFact/counterfact-train.json": ("cf-easyedit", 240, 0),
    "CounterFact/counterfact-val.json": ("cf-easyedit", 200, 0),
    "KnowEdit/WikiBio/wikibio-train-all.json": ("wikibio", 40, 0),
    "KnowEdit/ZsRE/ZsRE-test-dev.json": ("zsre", 60, 0),
    "KnowEdit/wiki_counterfact/train_cf-dev.json": ("counterfact", 40, 0),
    "KnowEdit/wiki_recent/recent_train-dev.json": ("recent", 40, 0),
    "MQuAKE/MQuAKE-CF-3k-dev.json": ("mquake", 100, 0),
    "zsRE-MEND/zsre_mend_train-1k.json": ("zsre-mend", 60, 2),  # two records with an empty target
}
PROMPT_FILES = {
    "MQuAKE/prompts/rel-prompts.json",
    "MQuAKE/prompts/templates/cloze_templates.json",
    "MQuAKE/prompts/templates/question_templates.json",
}


def test_every_data_file_is_known(data_dir):
    found = {str(p.relative_to(data_dir)) for p in data_dir.rglob("*.json")}
    assert found == set(EXPECTED) | PROMPT_FILES


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_every_data_file_loads_with_its_kind(data_dir, rel):
    kind, n, n_bad = EXPECTED[rel]
    loaded = load_mquake(data_dir / rel) if kind == "mquake" else load_knowedit(data_dir / rel)
    assert loaded.kind == kind
    assert len(loaded.cases) == n
    assert len(loaded.malformed) == n_bad
    assert loaded.n_records == n + n_bad
    if kind != "mquake":  # the kind given explicitly must agree
        assert len(load_knowedit(data_dir / rel, kind=kind).cases) == n


def test_zsre_mend_empty_targets_are_reported_with_index_and_reason(data_dir):
    loaded = load_knowedit(data_dir / "zsRE-MEND")
    assert [(m.index, m.reason) for m in loaded.malformed] == [
        (60, "field 'alt' is empty"),  # source records 534 and 723, kept at the sample's end
        (61, "field 'alt' is empty"),
    ]
    assert loaded.cases[0].locality["neighborhood"][0].prompt.startswith("nq question:")


def test_knowedit_fields_normalised_as_easyedit_reads_them(data_dir):
    zsre = load_knowedit(data_dir / "KnowEdit" / "ZsRE").cases[0]
    assert (zsre.prompt, zsre.subject, zsre.target_new) == (
        "Which family does Epaspidoceras belong to?",
        "Epaspidoceras",
        "Noctuidae",
    )
    assert zsre.rephrase == ("What family are Epaspidoceras?",)
    assert zsre.portability["Reasoning"][0].answer == "Owlet moths"
    recent = load_knowedit(data_dir / "KnowEdit" / "wiki_recent").cases[0]
    soviet = recent.locality["Relation_Specificity"][1]
    assert soviet.answer == "Soviet Union" and "USSR" in soviet.answers  # first alias scored, others kept
    assert recent.portability == {} and recent.rephrase == ()
    bio = load_knowedit(data_dir / "KnowEdit" / "WikiBio").cases[0]
    assert bio.subject == "rick mahler" and bio.target_new.startswith("Mahler was drafted")
    cf = load_knowedit(data_dir / "CounterFact" / "counterfact-val.json").cases[0]
    assert cf.locality["neighborhood"][0].answers == ("BBC",) and cf.rephrase


def test_malformed_records_are_counted_and_blank_probes_dropped(data_dir, tmp_path):
    records = json.loads((data_dir / "KnowEdit/ZsRE/ZsRE-test-dev.json").read_text())[:3]
    broken = dict(records[1])
    del broken["prompt"]
    blank = json.loads(json.dumps(records[2]))
    blank["locality"]["Relation_Specificity"][0]["ground_truth"] = [" "]
    path = tmp_path / "zsre-mixed.json"
    path.write_text(json.dumps([records[0], broken, blank, "not a record"]))
    loaded = load_knowedit(path)
    assert loaded.kind == "zsre" and len(loaded.cases) == 2
    assert [(m.index, m.reason) for m in loaded.malformed] == [
        (1, "field 'prompt' missing or not a string"),
        (3, "record is not an object"),
    ]
    n_orig = len(records[2]["locality"]["Relation_Specificity"])
    assert len(loaded.cases[1].locality["Relation_Specificity"]) == n_orig - 1


def test_wrong_benchmark_and_unknown_files_raise_clear_errors(data_dir, tmp_path):
    with pytest.raises(BenchmarkDataError, match="is an MQuAKE file"):
        load_knowedit(data_dir / "MQuAKE" / "MQuAKE-CF-3k-dev.json")
    with pytest.raises(BenchmarkDataError, match="KnowEdit-style 'zsre' data"):
        load_mquake(data_dir / "KnowEdit" / "ZsRE" / "ZsRE-test-dev.json")
    with pytest.raises(BenchmarkDataError, match="not a benchmark file"):
        load_knowedit(data_dir / "MQuAKE" / "prompts" / "rel-prompts.json")
    with pytest.raises(BenchmarkDataError, match="several kinds"):
        load_knowedit(data_dir / "KnowEdit")
    with pytest.raises(BenchmarkDataError, match="holds 'zsre' records, not 'recent'"):
        load_knowedit(data_dir / "KnowEdit" / "ZsRE" / "ZsRE-test-dev.json", kind="recent")
    with pytest.raises(BenchmarkDataError, match="MQuAKE data"):
        load_knowedit(data_dir / "MQuAKE")
    (tmp_path / "other.json").write_text(json.dumps([{"question": "q", "answer": "a"}]))
    with pytest.raises(BenchmarkDataError, match="match no KnowEdit-style format"):
        load_knowedit(tmp_path / "other.json")
    # every kind is reachable from the whole data directory with --kind
    for kind in KNOWEDIT_KINDS:
        assert load_knowedit(data_dir, kind=kind, limit=2).kind == kind


def test_mquake_cases_hops_and_prompts(data_dir):
    loaded = load_mquake(data_dir / "MQuAKE")
    cases = loaded.cases
    first = cases[0]
    assert first.case_id == "1" and first.new_answer == "Kolinda Grabar-Kitarović"
    assert [h.edited for h in first.new_single_hops] == [True, False]
    assert first.requested_rewrite[0].cloze == "Ellie Kemper is a citizen of"
    # one edited hop of the new chain per requested edit, across the whole file
    assert sum(h.edited for c in cases for h in c.new_single_hops) == sum(
        len(c.requested_rewrite) for c in cases
    )
    prompts = load_mquake_prompts(data_dir / "MQuAKE" / "prompts")
    assert {h.relation_id for c in cases for h in c.new_single_hops if not h.edited} <= set(prompts.relations)
    assert prompts.multihop_query("Who?").endswith("Elizabeth II\nQ: Who? A:")
    assert prompts.relation_query("P27", "Q?").count("\nQ: ") == 8
    assert prompts.mello.startswith("Question: ") and len(prompts.cloze_templates) == 44


def test_batches_and_conflicting_edits(data_dir):
    cases = load_mquake(data_dir / "MQuAKE").cases
    assert [len(b) for b in batches(cases[:90], 40)] == [40, 40, 10]
    facts, conflicted = batch_facts(cases)
    assert len(facts) <= sum(len(c.requested_rewrite) for c in cases)
    # verify every flagged case by hand: another edit rewrites (s, r) of its new chain to another object
    edits = {t for c in cases for t in c.edit_triples}
    by_id = {c.case_id: c for c in cases}
    for cid in conflicted:
        chain = by_id[cid].new_triples
        assert any((s, r) == (es, er) and o != eo for s, r, o in chain for es, er, eo in edits)
    assert batch_facts(cases[:1])[1] == set()


def test_run_dir_resumes_and_refuses_another_run(tmp_path):
    spec = RunSpec("knowedit", "/d/zsre.json", "none", "smollm2-135m", {"kind": "zsre"})
    run = RunDir(tmp_path / "r", spec)
    run.record({"case_id": "a", "metrics": {"rewrite_acc": 1.0}})
    run.record({"case_id": "b", "metrics": {"rewrite_acc": float("nan")}})
    with open(tmp_path / "r" / CASES, "a") as f:
        f.write('{"case_id": "c", "metr')  # a write cut short
    again = RunDir(tmp_path / "r", spec)
    assert set(again.finished) == {"a", "b"} and again.finished["b"]["metrics"]["rewrite_acc"] is None
    assert len((tmp_path / "r" / CASES).read_text().splitlines()) == 2
    with pytest.raises(RunDirError, match="different run"):
        RunDir(tmp_path / "r", RunSpec("knowedit", "/d/zsre.json", "rome", "smollm2-135m", {"kind": "zsre"}))


def test_compare_writes_tables_and_plots(tmp_path):
    dirs = []
    for method, es, loc in (("rome", 0.95, 0.4), ("none", 0.5, 1.0)):
        run = RunDir(
            tmp_path / f"ke-{method}", RunSpec("knowedit", "/d", method, "smollm2-135m", {"kind": "zsre"})
        )
        run.write_summary(
            {"edit_succ": es, "portability": 0.2, "locality": loc, "fluency": 6.1},
            3,
            [],
            extra={"kind": "zsre"},
        )
        dirs.append(run.path)
    for k, mh in (("1", 0.3), ("100", 0.2), ("all", 0.1)):
        run = RunDir(
            tmp_path / f"mq-{k}", RunSpec("mquake", "/d", "memit", "smollm2-135m", {"edits_per_batch": k})
        )
        run.write_summary(
            {"edit_wise": 0.9, "instance_wise": 0.2, "multi_hop": mh},
            627,
            [],
            extra={"edits_per_batch": {"1": 1, "100": 100, "all": 627}[k]},
        )
        dirs.append(run.path)
    written = write_report(dirs, tmp_path / "rep" / "report.md")
    report = written[0].read_text()
    # no cases.jsonl: values without intervals; each column's best in its (data, model) group bold, ties too;
    # no rephrase, so no Combined value
    assert "| zsre | smollm2-135m | rome | 3 | **95.00** | – | **20.00** | 40.00 | – | **610.00** |" in report
    assert (
        "| zsre | smollm2-135m | none | 3 | 50.00 | – | **20.00** | **100.00** | – | **610.00** |" in report
    )
    assert "| smollm2-135m | memit | all (627) | 627 | 90.00 | 20.00 | 10.00 | – | – |" in report
    pngs = [p for p in written if p.suffix == ".png"]
    assert {p.name for p in pngs} == {"knowedit-zsre-smollm2-135m.png", "mquake-smollm2-135m.png"}
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)

    # a header replaces the title; plots may go to their own directory, linked relative to the report
    written = write_report(
        dirs, tmp_path / "rep2" / "R.md", tmp_path / "rep2" / "plots", "# Results\n\nN = 3."
    )
    report = written[0].read_text()
    assert report.startswith("# Results\n\nN = 3.\n") and "# Benchmark comparison" not in report
    assert "![mquake-smollm2-135m](plots/mquake-smollm2-135m.png)" in report
    assert (tmp_path / "rep2" / "plots" / "mquake-smollm2-135m.png").is_file()


def test_cli_checks_data_and_method_before_loading_a_model(data_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "knowedit",
            "--method",
            "none",
            "--data",
            str(data_dir / "MQuAKE/MQuAKE-CF-3k-dev.json"),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert res.exit_code == 2 and "is an MQuAKE file" in " ".join(res.output.split())  # rich wraps long paths
    res = runner.invoke(
        app,
        [
            "knowedit",
            "--method",
            "mello",
            "--data",
            str(data_dir / "KnowEdit" / "ZsRE"),
            "--limit",
            "2",
            "--out",
            str(tmp_path / "y"),
        ],
    )
    assert res.exit_code == 2 and "unknown method 'mello' for knowedit" in res.output and "rag" in res.output
    res = runner.invoke(
        app, ["mquake", "--method", "none", "--edits-per-batch", "zero", "--out", str(tmp_path / "z")]
    )
    assert res.exit_code == 2 and "--edits-per-batch" in res.output
    res = runner.invoke(app, ["methods"])
    assert res.exit_code == 0 and "mello" in res.output
    assert not Path(tmp_path / "x").exists() and not Path(tmp_path / "y").exists()
