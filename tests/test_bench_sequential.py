"""Sequential editing (`--sequential`): every edit of the set applied one after another, nothing undone in
between, every case scored on the final state, then all undone newest first (real model, `rag`)."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from benchmarks.cli import app
from benchmarks.data.loaders import load_knowedit, load_mquake
from benchmarks.data.prompts import load_mquake_prompts
from benchmarks.methods.registry import make_method
from benchmarks.runners.knowedit import KnowEditSettings, run_knowedit
from benchmarks.runners.mquake import MQuAKESettings
from benchmarks.runners.mquake_sequential import run_mquake_sequential
from benchmarks.runners.runs import CASES, RunDir, RunSpec


def _spy(method, names: tuple[str, ...]) -> list[str]:
    """Record the order in which the runner calls `names` on the (real) method."""
    calls: list[str] = []
    for name in names:
        original = getattr(method, name)

        def logged(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        setattr(method, name, logged)
    return calls


def _store_is_empty(method) -> bool:
    store = method.kl.store
    return not store.facts() and not [p for p in store.passages() if p.deleted_at is None]


def _weights(bundle) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in bundle.model.named_parameters() if "mlp" in n}


def test_knowedit_sequential_rag_applies_both_edits_before_scoring(smollm, data_dir, tmp_path):
    loaded = load_knowedit(data_dir / "KnowEdit" / "ZsRE", limit=2)
    settings = KnowEditSettings("zsre", sequential=True, fluency=False)
    spec = RunSpec("knowedit", "ZsRE", "rag", "smollm2-135m", {"kind": "zsre", "sequential": True})
    method = make_method("rag", smollm, "knowedit")
    calls = _spy(method, ("apply", "undo"))
    original_score = method.score

    def score_seeing_the_store(prompts, targets):  # how many facts are in the store while scoring
        calls.append(f"score@{len([p for p in method.kl.store.passages() if p.deleted_at is None])}")
        return original_score(prompts, targets)

    method.score = score_seeing_the_store
    try:
        summary = run_knowedit(method, loaded, RunDir(tmp_path / "seq", spec), settings)
        assert _store_is_empty(method)
    finally:
        method.close()
    first = calls.index("apply")
    assert set(calls[:first]) <= {"score@0"}  # pre-edit scores on the empty store
    assert calls[first : first + 2] == ["apply", "apply"] and calls[-2:] == ["undo", "undo"]
    assert calls[first + 2 : -2] and set(calls[first + 2 : -2]) == {"score@2"}  # both facts in at every score
    assert summary["complete"] and summary["n_cases"] == 2 and summary["settings"]["sequential"]
    assert {"edit_succ", "rephrase", "locality", "combined"} <= set(summary["metrics"])
    assert set(summary["intervals"]) == set(summary["metrics"])
    for name, (lo, hi) in summary["intervals"].items():
        assert lo <= summary["metrics"][name] + 1e-9 and summary["metrics"][name] <= hi + 1e-9, name


def test_mquake_sequential_rag_probes_every_case_after_every_edit_and_resumes(smollm, data_dir, tmp_path):
    loaded = load_mquake(data_dir / "MQuAKE", limit=2)
    prompts = load_mquake_prompts(data_dir / "MQuAKE" / "prompts")
    settings = MQuAKESettings("1", limit=2)
    spec = RunSpec("mquake", "MQuAKE", "rag", "smollm2-135m", settings.spec() | {"sequential": True})
    before = _weights(smollm)
    method = make_method("rag", smollm, "mquake")
    calls = _spy(method, ("apply", "undo", "generate_lines"))
    try:
        summary = run_mquake_sequential(method, loaded, RunDir(tmp_path / "mq", spec), settings, prompts)
        assert _store_is_empty(method)
        n_calls = len(calls)
        again = run_mquake_sequential(method, loaded, RunDir(tmp_path / "mq", spec), settings, prompts)
    finally:
        method.close()
    assert calls[:2] == ["apply", "apply"] and calls[n_calls - 2 : n_calls] == ["undo", "undo"]
    assert "generate_lines" in calls[2 : n_calls - 2] and "apply" not in calls[2:n_calls]
    assert calls[n_calls:] == []  # resumed with every case recorded: nothing applied, nothing probed
    assert summary["complete"] and summary["n_cases"] == 2 and summary["n_batches"] == 2
    assert summary["edits_per_batch"] == 1 and summary["n_edit_errors"] == 0
    assert again["metrics"] == summary["metrics"]
    records = [json.loads(line) for line in (tmp_path / "mq" / CASES).read_text().splitlines()]
    assert [r["batch"] for r in records] == [0, 1]
    assert all(torch.equal(before[n], p) for n, p in _weights(smollm).items())


def test_cli_refuses_a_sharded_sequential_mquake_run_before_loading_the_model(
    data_dir, tmp_path, monkeypatch
):
    from benchmarks.runners import cli as runner_cli

    def no_model(name):
        raise AssertionError("model loaded")

    monkeypatch.setattr(runner_cli, "load_bundle", no_model)
    res = CliRunner().invoke(
        app,
        [
            "mquake",
            "--method",
            "rag",
            "--data",
            str(data_dir / "MQuAKE"),
            "--sequential",
            "--shard",
            "1/2",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and "sequential" in res.output
