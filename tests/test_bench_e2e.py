"""End-to-end benchmark runs on the real SmolLM2-135M: 3 KnowEdit and 3 MQuAKE cases (k = all) with the
`none` baseline, one KnowEdit case edited with ROME (undo, resume), EasyEdit's fluency sampling. The
3-case ROME runs of both benchmarks are `slow` (a ROME edit costs 20-70 s of CPU here).

Store methods: `rag` on 3 MQuAKE and 3 KnowEdit cases; MeLLo's loop with scripted generations and on one
real question (a MeLLo case costs 1-2 min here, so the 3-case run is `slow`); `layer` on 3 MQuAKE cases with the route
forced to the store (kedit's query path, no weight edit) and on one KnowEdit case through the router (a
weight edit); the 3-case `layer` runs through the router (ROME / MEMIT edits) are `slow`."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.data.loaders import BenchmarkDataError, load_knowedit, load_mquake
from benchmarks.data.prompts import load_mquake_prompts
from benchmarks.methods.registry import make_method
from benchmarks.runners.knowedit import KnowEditSettings, run_knowedit
from benchmarks.runners.mquake import MQuAKESettings, batch_facts, run_mquake
from benchmarks.runners.runs import CASES, RunDir, RunSpec
from benchmarks.scoring.generation import sample_ids_like_easyedit
from benchmarks.scoring.metrics import ngram_entropy

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
    spec = RunSpec(
        "knowedit", str(data_dir / "KnowEdit" / "ZsRE"), method_name, "smollm2-135m", {"kind": "zsre"}
    )
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
    method.close()
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
    summary = run_knowedit(
        make_method("none", smollm, "knowedit"),
        loaded,
        RunDir(tmp_path / "r", spec),
        KnowEditSettings("counterfact", fluency=True),
    )
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
    assert ids == sample_ids_like_easyedit(
        smollm, "The Eiffel Tower is in", max_out_len=len(prompt_ids) + 6, seed=3
    )
    # a WikiBio passage longer than 100 tokens gets no new token, as in EasyEdit's generate_fast
    bio = next(
        c
        for c in load_knowedit(data_dir / "KnowEdit" / "WikiBio").cases
        if len(tok(c.prompt)["input_ids"]) > 100
    )
    assert sample_ids_like_easyedit(smollm, bio.prompt) == tok(bio.prompt)["input_ids"]


def test_mquake_three_cases_all_edits_together(smollm, data_dir, tmp_path):
    loaded = load_mquake(data_dir / "MQuAKE", limit=3)
    spec = RunSpec("mquake", str(data_dir / "MQuAKE"), "none", "smollm2-135m", {"edits_per_batch": "all"})
    summary = run_mquake(
        make_method("none", smollm, "mquake"),
        loaded,
        RunDir(tmp_path / "mq", spec),
        MQuAKESettings("all", limit=3),
        load_mquake_prompts(data_dir / "MQuAKE" / "prompts"),
    )
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


def test_mquake_batch_recorded_in_chunks_resumes_mid_batch(smollm, data_dir, tmp_path):
    """A method probing `record_every` cases at a time keeps the cases of a batch finished before a crash;
    the resumed run probes only the rest, and its records equal those of an uninterrupted run."""
    from benchmarks.methods.base import NoEdit

    class Crashing(NoEdit):
        record_every = 2
        crash_on: str | None = None
        asked: list[str] = []

        def generate_lines(self, prompts, max_new_tokens, stop_when=None):
            self.asked.extend(prompts)
            if self.crash_on is not None and any(self.crash_on in p for p in prompts):
                raise RuntimeError("simulated crash")
            return super().generate_lines(prompts, max_new_tokens, stop_when)

    loaded = load_mquake(data_dir / "MQuAKE", limit=3)
    prompts = load_mquake_prompts(data_dir / "MQuAKE" / "prompts")
    spec = RunSpec("mquake", str(data_dir / "MQuAKE"), "none", "smollm2-135m", {"edits_per_batch": "all"})
    method = Crashing(smollm)
    method.crash_on = loaded.cases[2].questions[0]  # the third case: second chunk
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_mquake(method, loaded, RunDir(tmp_path / "mq", spec), MQuAKESettings("all", limit=3), prompts)
    kept = [json.loads(line) for line in (tmp_path / "mq" / CASES).read_text().splitlines()]
    assert [r["case_id"] for r in kept] == [c.case_id for c in loaded.cases[:2]]

    method.crash_on, method.asked = None, []
    summary = run_mquake(
        method, loaded, RunDir(tmp_path / "mq", spec), MQuAKESettings("all", limit=3), prompts
    )
    assert summary["complete"] and summary["n_cases"] == 3
    assert not any(q in p for p in method.asked for c in loaded.cases[:2] for q in c.questions)
    resumed = [json.loads(line) for line in (tmp_path / "mq" / CASES).read_text().splitlines()]

    whole = run_mquake(
        NoEdit(smollm), loaded, RunDir(tmp_path / "whole", spec), MQuAKESettings("all", limit=3), prompts
    )
    records = [json.loads(line) for line in (tmp_path / "whole" / CASES).read_text().splitlines()]
    assert [r["metrics"] for r in resumed] == [r["metrics"] for r in records]
    assert [r["outputs"] for r in resumed] == [r["outputs"] for r in records]
    assert whole["metrics"] == summary["metrics"]


def test_mquake_probe_per_batch_scores_the_first_cases_with_all_edits_applied(smollm, data_dir, tmp_path):
    """`probe_per_batch` (for slow methods at large k): the batch's edits come from all its cases, only the
    first M are probed and scored; the run is complete once those are recorded, and a bad M is refused."""
    from benchmarks.methods.base import NoEdit

    loaded = load_mquake(data_dir / "MQuAKE", limit=3)
    prompts = load_mquake_prompts(data_dir / "MQuAKE" / "prompts")
    settings = MQuAKESettings("all", limit=3, probe_per_batch=1)
    assert settings.spec()["probe_per_batch"] == 1 and "probe_per_batch" not in MQuAKESettings("all").spec()
    spec = RunSpec("mquake", str(data_dir / "MQuAKE"), "none", "smollm2-135m", settings.spec())
    summary = run_mquake(NoEdit(smollm), loaded, RunDir(tmp_path / "mq", spec), settings, prompts)
    assert summary["complete"] and summary["n_cases"] == 1 and summary["n_cases_edited"] == 3
    records = [json.loads(line) for line in (tmp_path / "mq" / CASES).read_text().splitlines()]
    n_facts = len(batch_facts(loaded.cases)[0])
    assert [r["case_id"] for r in records] == [loaded.cases[0].case_id] and records[0][
        "batch_facts"
    ] == n_facts
    with pytest.raises(BenchmarkDataError, match="probe-per-batch"):
        run_mquake(
            NoEdit(smollm),
            loaded,
            RunDir(tmp_path / "bad", spec),
            MQuAKESettings("all", probe_per_batch=0),
            prompts,
        )


@pytest.mark.slow
def test_mquake_rome_three_cases(smollm, data_dir, tmp_path):
    loaded = load_mquake(data_dir / "MQuAKE", limit=3)
    spec = RunSpec("mquake", str(data_dir / "MQuAKE"), "rome", "smollm2-135m", {"edits_per_batch": "all"})
    before = _weights(smollm)
    summary = run_mquake(
        make_method("rome", smollm, "mquake"),
        loaded,
        RunDir(tmp_path / "mq", spec),
        MQuAKESettings("all", limit=3),
        load_mquake_prompts(data_dir / "MQuAKE" / "prompts"),
    )
    assert all(torch.equal(before[n], p) for n, p in _weights(smollm).items())
    assert summary["n_edit_errors"] == 0
    assert summary["metrics"]["edit_wise"] > 0.0


# ---------------------------------------------------------------- store methods: rag, mello, layer


def _mquake_run(
    smollm, data_dir, tmp_path, method, limit: int = 3, k: str = "all"
) -> tuple[dict, list[dict]]:
    loaded = load_mquake(data_dir / "MQuAKE", limit=limit)
    spec = RunSpec("mquake", str(data_dir / "MQuAKE"), method.name, "smollm2-135m", {"edits_per_batch": k})
    summary = run_mquake(
        method,
        loaded,
        RunDir(tmp_path / "mq", spec),
        MQuAKESettings(k, limit=limit),
        load_mquake_prompts(data_dir / "MQuAKE" / "prompts"),
    )
    assert summary["n_cases"] == limit and summary["complete"] and summary["n_edit_errors"] == 0
    assert MQUAKE_KEYS <= set(summary["metrics"])
    assert all(v is None or 0.0 <= v <= 1.0 for v in summary["metrics"].values())
    records = [json.loads(line) for line in (tmp_path / "mq" / CASES).read_text().splitlines()]
    return summary, records


def _store_is_empty(method) -> bool:
    store = method.kl.store
    return not store.facts() and not [p for p in store.passages() if p.deleted_at is None]


def test_retrieval_query_and_fact_lines():
    from benchmarks.methods.store import fact_lines, retrieval_query

    assert retrieval_query("Q: Who? A: X\nQ: Which city was Y born in? A:") == "Which city was Y born in?"
    assert retrieval_query("The author of Misery is") == "The author of Misery is"
    assert fact_lines(["A is B.", "C is D"]) == "New Fact: A is B.\nNew Fact: C is D.\n"


def test_mquake_rag_three_cases_uses_and_empties_the_store(smollm, data_dir, tmp_path):
    before = _weights(smollm)
    method = make_method("rag", smollm, "mquake")
    try:
        loaded = load_mquake(data_dir / "MQuAKE", limit=3)
        applied = method.apply([f for c in loaded.cases for f in c.facts])
        # every edit is a graph fact (MQuAKE names the relation) and the top hit for its own cloze
        assert len(method.kl.store.facts()) == sum(len(c.facts) for c in loaded.cases)
        rw = loaded.cases[0].requested_rewrite[0]
        assert method.retrieve(rw.cloze, k=1) == [rw.fact.statement]
        assert method._context(rw.cloze).startswith(f"New Fact: {rw.fact.statement}.\n")
        method.undo(applied)
        assert _store_is_empty(method) and method.retrieve(rw.cloze) == []

        summary, records = _mquake_run(smollm, data_dir, tmp_path, method)
        assert _store_is_empty(method)
    finally:
        method.close()
    assert all(torch.equal(before[n], p) for n, p in _weights(smollm).items())  # no weight change
    assert all(len(r["outputs"]["multi_hop_answers"]) >= 1 for r in records)


def test_knowedit_rag_three_cases(smollm, data_dir, tmp_path):
    from benchmarks.methods.store import RagMethod

    summary, records, cases = _knowedit_run(smollm, data_dir, tmp_path, "rag", 3)
    # ZsRE prompts are questions no relation template matches: each edit is stored as a passage, put in
    # context for scoring, and taken back; with it in context the target is more likely than without
    case = cases[0]
    method = RagMethod(smollm)
    try:
        applied = method.apply([case.fact])
        assert method.retrieve(case.prompt) == [f"{case.fact.statement}."]
        with_ctx = method.score([case.prompt], [case.target_new])[0]
        text = method.sample(case.prompt, seed=0)  # EasyEdit's fluency text: the prompt, then the sample
        method.undo(applied)
        assert _store_is_empty(method)
        without = method.score([case.prompt], [case.target_new])[0]
    finally:
        method.close()
    assert with_ctx.logprob > without.logprob
    assert text.startswith(case.prompt) and "New Fact" not in text[: len(case.prompt) + 1]
    assert records[0]["metrics"]["rewrite_acc"] >= records[0]["pre"]["rewrite_acc"]


def test_prefix_cached_greedy_matches_plain_greedy(smollm):
    from benchmarks.methods.mello import PrefixCachedGreedy
    from benchmarks.scoring.generation import greedy_generate

    gen = PrefixCachedGreedy(smollm)
    base = "Q: What is the capital of France? A: Paris\nQ: What is the capital of Italy? A:"
    for prompt in (base, base + " Rome\nQ: What is the capital of Spain? A:", base):
        assert gen(prompt, 6, stop=("\n",)) == greedy_generate(smollm, prompt, 6, stop=("\n",))


def test_mello_loop_reads_subquestions_retrieves_and_stops(smollm, data_dir):
    """The MeLLo control flow with scripted generations (the real model is exercised below)."""
    from benchmarks.methods.mello import MeLLoMethod

    prompts = load_mquake_prompts(data_dir / "MQuAKE" / "prompts")
    method = MeLLoMethod(smollm)
    script = iter(
        [
            "\nSubquestion: What is the country of citizenship of Ellie Kemper?\nGenerated answer: USA.\n",
            "\nRetrieved fact contradicts to generated answer, so the intermediate answer is: Croatia\n"
            "Subquestion: Who is the head of state of Croatia?\nGenerated answer: Kolinda Grabar-Kitarović.\n",
            "\nRetrieved fact does not contradict to generated answer, so the intermediate answer is: "
            "Kolinda Grabar-Kitarović\nFinal answer: Kolinda Grabar-Kitarović",
        ]
    )
    seen: list[str] = []

    def scripted(prompt, max_new_tokens, stop=()):
        seen.append(prompt)
        return next(script)

    method._greedy = scripted
    try:
        loaded = load_mquake(data_dir / "MQuAKE", limit=1)
        applied = method.apply(list(loaded.cases[0].facts))
        got = method.answer_multihop(loaded.cases[0].questions[0], prompts)
        assert got.answer == "Kolinda Grabar-Kitarović" and len(seen) == 3
        assert seen[0] == prompts.mello_query(loaded.cases[0].questions[0])
        assert seen[1].endswith(
            "Generated answer: USA.\nRetrieved fact: Ellie Kemper is a citizen of Croatia."
        )
        method.undo(applied)
    finally:
        method.close()


def test_mello_loop_with_the_model(smollm, data_dir):
    """One question through the real loop (a whole MeLLo case costs ~1-2 min here: the runs are `slow`)."""
    prompts = load_mquake_prompts(data_dir / "MQuAKE" / "prompts")
    case = load_mquake(data_dir / "MQuAKE", limit=1).cases[0]
    method = make_method("mello", smollm, "mquake")
    try:
        applied = method.apply(list(case.facts))
        got = method.answer_multihop(case.questions[1], prompts)
        method.undo(applied)
        assert _store_is_empty(method)
    finally:
        method.close()
    # the model decomposed the question and the edit was retrieved for its subquestion
    assert (
        got.raw.startswith("\nSubquestion:")
        and "Retrieved fact: Ellie Kemper is a citizen of Croatia." in got.raw
    )


@pytest.mark.slow
def test_mquake_mello_three_cases(smollm, data_dir, tmp_path):
    method = make_method("mello", smollm, "mquake")
    try:
        _mquake_run(smollm, data_dir, tmp_path, method)
    finally:
        method.close()


def test_mquake_layer_three_cases_store_route(smollm, data_dir, tmp_path):
    """kedit's query path over the store (route forced to `store`, so no weight edit: fast)."""
    from benchmarks.methods.layer import LayerMethod

    before = _weights(smollm)
    method = LayerMethod(smollm, route="store")
    try:
        summary, records = _mquake_run(smollm, data_dir, tmp_path, method)
        assert not method.kl.store.facts() and not method.kl.weights.changes
        raw = json.loads(records[0]["outputs"]["multi_hop_answers"][0]["raw"])
        # Ellie Kemper -> P27 -> Croatia comes from the stored edit (first hop of the chain)
        assert raw["mode"] == "chain" and raw["hops"][0][:3] == ["Ellie Kemper", "P27", "Croatia"]
        assert raw["hops"][0][3] == "stored"
    finally:
        method.close()
    assert all(torch.equal(before[n], p) for n, p in _weights(smollm).items())


def test_knowedit_layer_one_case_router(smollm, data_dir, tmp_path):
    """The router's choice on a ZsRE edit (a question prompt: weights), scored on the edited model, undone
    bit-exactly through `KnowledgeLayer.undo`."""
    method = make_method("layer", smollm, "knowedit")
    try:
        loaded = load_knowedit(data_dir / "KnowEdit" / "ZsRE", limit=1)
        before = _weights(smollm)
        applied = method.apply([loaded.cases[0].fact])
        assert applied.error is None
        routes = method.routes(applied)
        assert routes and routes[0] in ("parametric", "both", "store")
        if routes[0] != "store":
            assert method.kl.weights.changes
            s = method.score([loaded.cases[0].prompt], [loaded.cases[0].target_new])[0]
            assert s.accuracy == 1.0  # the router verified the edit
        method.undo(applied)
        assert not method.kl.weights.changes and _store_is_empty(method)
        assert all(torch.equal(before[n], p) for n, p in _weights(smollm).items())
    finally:
        method.close()


@pytest.mark.slow
def test_knowedit_layer_three_cases(smollm, data_dir, tmp_path):
    summary, _, _ = _knowedit_run(smollm, data_dir, tmp_path, "layer", 3)
    assert summary["metrics"]["edit_succ"] > summary["metrics"]["pre_edit_succ"]


@pytest.mark.slow
def test_mquake_layer_three_cases_router(smollm, data_dir, tmp_path):
    before = _weights(smollm)
    method = make_method("layer", smollm, "mquake")
    try:
        summary, _ = _mquake_run(smollm, data_dir, tmp_path, method)
        assert not method.kl.weights.changes and _store_is_empty(method)
    finally:
        method.close()
    assert all(torch.equal(before[n], p) for n, p in _weights(smollm).items())
    assert summary["metrics"]["edit_wise"] > 0.0
