"""End-to-end benchmark runs on the real SmolLM2-135M: 3 KnowEdit and 3 MQuAKE cases (k = all) with the
`none` baseline, one KnowEdit case edited with ROME (undo, resume), EasyEdit's fluency sampling. The
3-case ROME runs of both benchmarks are `slow` (a ROME edit costs 20-70 s of CPU here)."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.generation import sample_ids_like_easyedit
from benchmarks.knowedit import KnowEditSettings, run_knowedit
from benchmarks.loaders import load_knowedit, load_mquake
from benchmarks.methods import make_method
from benchmarks.metrics import ngram_entropy
from benchmarks.mquake import MQuAKESettings, run_mquake
from benchmarks.prompts import load_mquake_prompts
from benchmarks.runs import CASES, RunDir, RunSpec

KNOWEDIT_KEYS = {"edit_succ", "rephrase", "portability", "locality"}
MQUAKE_KEYS = {"edit_wise", "instance_wise", "multi_hop", "edited_hop_recall", "unedited_hop_recall"}


def _weights(bundle) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in bundle.model.named_parameters() if "mlp" in n}


@torch.no_grad()
def _easyedit_acc(bundle, prompt: str, target: str) -> float:
    """EasyEdit `test_prediction_acc` for one pair, written out independently of kedit.scoring."""
    tok = bundle.tokenizer
    full = tok(prompt + " " + target)["input_ids"]
    n_prompt = len(tok(prompt)["input_ids"])
    answers = bundle.model(input_ids=torch.tensor([full])).logits.argmax(-1)[0].tolist()[n_prompt - 1 : -1]
    labels = full[n_prompt:]
    return sum(a == b for a, b in zip(answers, labels)) / len(labels)


def _knowedit_run(smollm, data_dir, tmp_path, method_name: str, limit: int) -> tuple[dict, list[dict], list]:
    """Run `method_name` on the first `limit` ZsRE cases; check the run directory, undo and resume."""
    loaded = load_knowedit(data_dir / "KnowEdit" / "ZsRE", limit=limit)
    settings = KnowEditSettings("zsre", fluency=False)
    spec = RunSpec("knowedit", str(data_dir / "KnowEdit" / "ZsRE"), method_name, "smollm2-135m", {"kind": "zsre"})
    before = _weights(smollm)
    method = make_method(method_name, smollm, "knowedit")
    summary = run_knowedit(method, loaded, RunDir(tmp_path / "run", spec), settings)

    after = _weights(smollm)
    assert all(torch.equal(before[n], after[n]) for n in before)  # every edit undone, bit-exact
    assert summary["n_cases"] == limit and summary["complete"] and summary["n_malformed"] == 0
    assert summary["n_edit_errors"] == 0
    assert KNOWEDIT_KEYS <= set(summary["metrics"])
    assert all(0.0 <= v <= 1.0 for v in summary["metrics"].values())
    records = [json.loads(line) for line in (tmp_path / "run" / CASES).read_text().splitlines()]
    assert [r["case_id"] for r in records] == [c.case_id for c in loaded.cases]
    for case, rec in zip(loaded.cases, records):
        # the pre-edit rewrite accuracy is EasyEdit's token accuracy on the unedited model
        assert rec["pre"]["rewrite_acc"] == pytest.approx(_easyedit_acc(smollm, case.prompt, case.target_new))
        assert set(rec["metrics"]["locality"]) == set(case.locality)
    assert {"summary.json", "summary.md", "run.json", CASES} <= {p.name for p in (tmp_path / "run").iterdir()}

    # resume: nothing left to do, nothing recomputed, same summary
    again = run_knowedit(method, loaded, RunDir(tmp_path / "run", spec), settings)
    assert len((tmp_path / "run" / CASES).read_text().splitlines()) == limit
    assert again["metrics"] == summary["metrics"]
    return summary, records, loaded.cases


def test_knowedit_three_cases_on_the_unedited_model(smollm, data_dir, tmp_path):
    summary, records, _ = _knowedit_run(smollm, data_dir, tmp_path, "none", 3)
    m = summary["metrics"]
    assert m["locality"] == 1.0  # same model before and after: every argmax token agrees
    assert m["edit_succ"] == m["pre_edit_succ"] and m["portability"] == m["pre_portability"]


def test_knowedit_rome_edits_and_undoes(smollm, data_dir, tmp_path):
    summary, records, cases = _knowedit_run(smollm, data_dir, tmp_path, "rome", 1)
    assert records[0]["metrics"]["rewrite_acc"] > records[0]["pre"]["rewrite_acc"]
    assert records[0]["metrics"]["rewrite_acc"] == pytest.approx(1.0)


def test_knowedit_sequential_mode_runs_and_resumes(smollm, data_dir, tmp_path):
    loaded = load_knowedit(data_dir / "KnowEdit" / "wiki_recent", limit=2)
    settings = KnowEditSettings("recent", sequential=True, fluency=False)
    spec = RunSpec("knowedit", "wiki_recent", "none", "smollm2-135m", {"sequential": True})
    method = make_method("none", smollm, "knowedit")
    summary = run_knowedit(method, loaded, RunDir(tmp_path / "seq", spec), settings)
    assert summary["n_cases"] == 2 and summary["complete"] and summary["metrics"]["locality"] == 1.0
    again = run_knowedit(method, loaded, RunDir(tmp_path / "seq", spec), settings)
    assert again["metrics"] == summary["metrics"]
    assert len((tmp_path / "seq" / CASES).read_text().splitlines()) == 2


@pytest.mark.slow
def test_knowedit_rome_three_cases(smollm, data_dir, tmp_path):
    summary, _, _ = _knowedit_run(smollm, data_dir, tmp_path, "rome", 3)
    assert summary["metrics"]["edit_succ"] > summary["metrics"]["pre_edit_succ"]


def test_unedited_model_has_full_locality_and_easyedit_fluency(smollm, data_dir, tmp_path):
    loaded = load_knowedit(data_dir / "KnowEdit" / "wiki_counterfact", limit=1)
    spec = RunSpec("knowedit", "wiki_counterfact", "none", "smollm2-135m", {})
    summary = run_knowedit(make_method("none", smollm, "knowedit"), loaded, RunDir(tmp_path / "r", spec),
                           KnowEditSettings("counterfact", fluency=True))
    m = summary["metrics"]
    assert m["locality"] == 1.0 and m["edit_succ"] == m["pre_edit_succ"]
    rec = json.loads((tmp_path / "r" / CASES).read_text())
    text = rec["outputs"]["fluency_text"]
    assert text.startswith(loaded.cases[0].prompt)  # EasyEdit's fluency text includes the prompt
    assert m["fluency"] == pytest.approx(ngram_entropy(text)) and m["fluency"] > 1.0


def test_fluency_sample_is_100_tokens_including_the_prompt(smollm, data_dir):
    tok = smollm.tokenizer
    prompt_ids = tok("The Eiffel Tower is in")["input_ids"]
    ids = sample_ids_like_easyedit(smollm, "The Eiffel Tower is in", max_out_len=len(prompt_ids) + 6, seed=3)
    assert len(ids) == len(prompt_ids) + 6 and ids[: len(prompt_ids)] == prompt_ids
    assert ids == sample_ids_like_easyedit(smollm, "The Eiffel Tower is in", max_out_len=len(prompt_ids) + 6, seed=3)
    # a WikiBio passage longer than 100 tokens gets no new token, as in EasyEdit's generate_fast
    bio = next(c for c in load_knowedit(data_dir / "KnowEdit" / "WikiBio").cases if len(tok(c.prompt)["input_ids"]) > 100)
    assert sample_ids_like_easyedit(smollm, bio.prompt) == tok(bio.prompt)["input_ids"]


def test_mquake_three_cases_all_edits_together(smollm, data_dir, tmp_path):
    loaded = load_mquake(data_dir / "MQuAKE", limit=3)
    spec = RunSpec("mquake", str(data_dir / "MQuAKE"), "none", "smollm2-135m", {"edits_per_batch": "all"})
    summary = run_mquake(make_method("none", smollm, "mquake"), loaded, RunDir(tmp_path / "mq", spec),
                         MQuAKESettings("all", limit=3), load_mquake_prompts(data_dir / "MQuAKE" / "prompts"))
    assert summary["n_cases"] == 3 and summary["edits_per_batch"] == 3 and summary["n_batches"] == 1
    assert MQUAKE_KEYS <= set(summary["metrics"])
    # the unedited model cannot know counterfactual edits
    assert summary["metrics"]["edit_wise"] == 0.0 and summary["metrics"]["edited_hop_recall"] == 0.0
    records = [json.loads(line) for line in (tmp_path / "mq" / CASES).read_text().splitlines()]
    for rec, case in zip(records, loaded.cases):
        answers = rec["outputs"]["multi_hop_answers"]
        assert 1 <= len(answers) <= 3 and answers[0]["question"] == case.questions[0]
        assert len(rec["metrics"]["hops"]) == len(case.new_single_hops)
        assert rec["batch_facts"] == 3


@pytest.mark.slow
def test_mquake_rome_three_cases(smollm, data_dir, tmp_path):
    loaded = load_mquake(data_dir / "MQuAKE", limit=3)
    spec = RunSpec("mquake", str(data_dir / "MQuAKE"), "rome", "smollm2-135m", {"edits_per_batch": "all"})
    before = _weights(smollm)
    summary = run_mquake(make_method("rome", smollm, "mquake"), loaded, RunDir(tmp_path / "mq", spec),
                         MQuAKESettings("all", limit=3), load_mquake_prompts(data_dir / "MQuAKE" / "prompts"))
    assert all(torch.equal(before[n], p) for n, p in _weights(smollm).items())
    assert summary["n_edit_errors"] == 0
    assert summary["metrics"]["edit_wise"] > 0.0
