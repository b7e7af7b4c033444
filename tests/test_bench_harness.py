"""The batched KnowEdit harness against the legacy one (same numbers, pre-edit scores cached across
methods), and runs split into shards then merged (same cases as the unsharded run).

The ROME comparison runs 2 ZsRE cases through both harnesses with the fluency sample on (43-67 s measured
on 2 cores under a load average of 5-6; the ROME edits are most of it); the shard runs use the `none` baseline."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from benchmarks.data.loaders import load_knowedit, load_mquake
from benchmarks.data.prompts import load_mquake_prompts
from benchmarks.methods.registry import make_method
from benchmarks.runners.knowedit import KnowEditSettings, run_knowedit
from benchmarks.runners.mquake import MQuAKESettings, run_mquake
from benchmarks.runners.pre_cache import PreScoreCache
from benchmarks.runners.runs import CASES, RunDir, RunSpec
from benchmarks.runners.shards import MergeError, Shard, ShardSpecError, merge_runs, shard_spec

TIMING = ("edit_seconds", "eval_seconds")


# timings, and the id a weight edit gets when made (a fresh one every run)
VOLATILE = ("_s", "weight_edit")


def _cases(path) -> list[dict]:
    """A run's case lines without their timings (the only fields allowed to differ between runs)."""
    rows = [json.loads(line) for line in (path / CASES).read_text().splitlines()]
    out = []
    for r in rows:
        r = {k: v for k, v in r.items() if k not in TIMING}
        r["edit_info"] = {k: v for k, v in (r.get("edit_info") or {}).items() if not k.endswith(VOLATILE)}
        out.append(r)
    return out


def _weights(bundle) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in bundle.model.named_parameters() if "mlp" in n}


def test_batched_harness_gives_the_legacy_numbers_and_caches_pre_scores(smollm, data_dir, tmp_path):
    loaded = load_knowedit(data_dir / "KnowEdit" / "ZsRE", limit=2)
    settings = KnowEditSettings("zsre", fluency=True)
    spec = RunSpec("knowedit", "ZsRE", "rome", "smollm2-135m", {"kind": "zsre"})
    cache = PreScoreCache(tmp_path / "pre.sqlite")
    before = _weights(smollm)
    rome = make_method("rome", smollm, "knowedit")
    legacy = run_knowedit(rome, loaded, RunDir(tmp_path / "legacy", spec), settings, harness="legacy")
    batched = run_knowedit(
        rome, loaded, RunDir(tmp_path / "batched", spec), settings, harness="batched", cache=cache
    )
    after = _weights(smollm)
    assert all(torch.equal(before[n], after[n]) for n in before)  # every edit undone

    assert batched["metrics"] == legacy["metrics"]  # identical, not merely close
    assert _cases(tmp_path / "batched") == _cases(tmp_path / "legacy")
    assert all(
        r["metrics"]["fluency"] > 0 and r["outputs"]["fluency_text"] for r in _cases(tmp_path / "batched")
    )
    assert batched["pre_cache"] == {"hits": 0, "misses": 2}
    stage_keys = {
        f"{name}{unit}" for name in ("pre", "edit", "score", "fluency", "undo") for unit in ("_s", "_cpu_s")
    }
    assert set(batched["stages"]) == stage_keys
    assert set(legacy["stages"]) == stage_keys

    # another method reads the same record's pre-edit scores from the cache, and they are the ones computed
    none_spec = RunSpec("knowedit", "ZsRE", "none", "smollm2-135m", {"kind": "zsre"})
    noedit = run_knowedit(
        make_method("none", smollm, "knowedit"),
        loaded,
        RunDir(tmp_path / "none", none_spec),
        KnowEditSettings("zsre", fluency=False),
        cache=cache,
    )
    assert noedit["pre_cache"] == {"hits": 2, "misses": 0}
    assert [r["pre"] for r in _cases(tmp_path / "none")] == [r["pre"] for r in _cases(tmp_path / "legacy")]
    assert noedit["metrics"]["locality"] == 1.0  # cached pre-edit argmax tokens are the unedited model's


def test_a_store_methods_fluency_samples_are_batched_to_the_legacy_texts(smollm, data_dir, tmp_path):
    """The layer on a ZsRE case (the router writes the fact to the weights and the store): the batched
    harness decodes its fluency sample framed by the facts retrieved while its edit was live and with its
    edited matrices (rows of several cases share `sample_requests` as the editors' do, above), and the
    case line is the legacy harness's."""
    loaded = load_knowedit(data_dir / "KnowEdit" / "ZsRE", limit=1)
    settings = KnowEditSettings("zsre", fluency=True)
    spec = RunSpec("knowedit", "ZsRE", "layer", "smollm2-135m", {"kind": "zsre"})
    before = _weights(smollm)
    layer = make_method("layer", smollm, "knowedit")
    try:
        legacy = run_knowedit(layer, loaded, RunDir(tmp_path / "legacy", spec), settings, harness="legacy")
        requests = []
        applied = layer.apply([loaded.cases[0].fact])
        requests.append(layer.fluency_request(loaded.cases[0].prompt))
        changed = layer.row_weights(applied)
        layer.undo(applied)
        batched = run_knowedit(layer, loaded, RunDir(tmp_path / "batched", spec), settings, harness="batched")
    finally:
        layer.close()
    assert all(torch.equal(before[n], p) for n, p in _weights(smollm).items())
    assert requests[0].head == loaded.cases[0].prompt and "New Fact:" in requests[0].text  # framed
    assert changed is not None and (changed or layer.routes(applied) == ["store"])
    assert batched["metrics"] == legacy["metrics"]
    assert _cases(tmp_path / "batched") == _cases(tmp_path / "legacy")


def test_shard_parse_and_split():
    assert Shard.parse(" 3 / 4 ") == Shard(3, 4)
    for bad in ("", "3", "0/2", "3/2", "1/0", "a/b", "-1/2"):
        with pytest.raises(ShardSpecError):
            Shard.parse(bad)
    items = list(range(11))
    parts = [Shard(i, 4).select(items) for i in range(1, 5)]
    assert [x for p in parts for x in p] == items  # contiguous, in order, every item exactly once
    assert {len(p) for p in parts} <= {2, 3}
    with pytest.raises(ShardSpecError, match="cannot be split"):
        Shard(1, 5).select(items[:4])
    assert shard_spec({"kind": "zsre"}, None) == shard_spec({"kind": "zsre"}, Shard(1, 1)) == {"kind": "zsre"}
    assert shard_spec({"kind": "zsre"}, Shard(2, 3)) == {"kind": "zsre", "shard": "2/3"}


def test_sequential_runs_are_not_sharded(smollm, data_dir, tmp_path):
    loaded = load_knowedit(data_dir / "KnowEdit" / "ZsRE", limit=2)
    spec = RunSpec("knowedit", "ZsRE", "none", "smollm2-135m", {})
    with pytest.raises(ShardSpecError, match="sequential"):
        run_knowedit(
            make_method("none", smollm, "knowedit"),
            loaded,
            RunDir(tmp_path / "r", spec),
            KnowEditSettings("zsre", sequential=True),
            shard=Shard(1, 2),
        )


def _knowedit_shards(smollm, data_dir, tmp_path, n: int) -> list:
    loaded = load_knowedit(data_dir / "KnowEdit" / "ZsRE", limit=3)
    settings = KnowEditSettings("zsre", fluency=False, limit=3)
    method = make_method("none", smollm, "knowedit")
    whole = RunSpec("knowedit", "ZsRE", "none", "smollm2-135m", shard_spec({"kind": "zsre"}, None))
    run_knowedit(method, loaded, RunDir(tmp_path / "whole", whole), settings)
    dirs = []
    for i in range(1, n + 1):
        spec = RunSpec("knowedit", "ZsRE", "none", "smollm2-135m", shard_spec({"kind": "zsre"}, Shard(i, n)))
        dirs.append(tmp_path / f"s{i}")
        run_knowedit(method, loaded, RunDir(dirs[-1], spec), settings, shard=Shard(i, n))
    return dirs


def test_knowedit_shards_merge_to_the_unsharded_run(smollm, data_dir, tmp_path):
    dirs = _knowedit_shards(smollm, data_dir, tmp_path, 2)
    assert [len(_cases(d)) for d in dirs] == [1, 2]
    merged = merge_runs(list(reversed(dirs)), tmp_path / "merged")
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert _cases(tmp_path / "merged") == _cases(tmp_path / "whole")
    assert merged["metrics"] == whole["metrics"] and merged["n_cases"] == 3 and merged["complete"]
    assert merged["intervals"] == whole["intervals"] and "combined" in merged["intervals"]
    assert merged["n_requested"] == 3
    assert json.loads((tmp_path / "merged" / "run.json").read_text()) == json.loads(
        (tmp_path / "whole" / "run.json").read_text()
    )

    with pytest.raises(MergeError, match="already holds"):
        merge_runs(dirs, tmp_path / "merged")
    with pytest.raises(MergeError, match="both shard"):
        merge_runs([dirs[0], dirs[0]], tmp_path / "twice")
    with pytest.raises(MergeError, match="splits the run 2 ways"):
        merge_runs([dirs[0], tmp_path / "whole"], tmp_path / "mixed")
    other = tmp_path / "other"
    shutil.copytree(dirs[1], other)
    header = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(json.dumps({**header, "method": "rome"}))
    with pytest.raises(MergeError, match="another run"):
        merge_runs([dirs[0], other], tmp_path / "mixed")
    partial = merge_runs(dirs[:1], tmp_path / "partial")
    assert not partial["complete"] and partial["n_cases"] == 1


def test_mquake_shards_merge_to_the_unsharded_run(smollm, data_dir, tmp_path):
    loaded = load_mquake(data_dir / "MQuAKE", limit=2)
    prompts = load_mquake_prompts(data_dir / "MQuAKE" / "prompts")
    settings = MQuAKESettings("1", limit=2)
    method = make_method("none", smollm, "mquake")

    def spec(shard):
        return RunSpec("mquake", "MQuAKE", "none", "smollm2-135m", shard_spec(settings.spec(), shard))

    run_mquake(method, loaded, RunDir(tmp_path / "whole", spec(None)), settings, prompts)
    for i in (1, 2):
        run_mquake(
            method,
            loaded,
            RunDir(tmp_path / f"s{i}", spec(Shard(i, 2))),
            settings,
            prompts,
            shard=Shard(i, 2),
        )
    merged = merge_runs([tmp_path / "s1", tmp_path / "s2"], tmp_path / "merged")
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert _cases(tmp_path / "merged") == _cases(tmp_path / "whole")
    assert [r["batch"] for r in _cases(tmp_path / "s2")] == [1]  # batch numbers are the whole run's
    assert merged["metrics"] == whole["metrics"] and merged["n_batches"] == whole["n_batches"] == 2
    with pytest.raises(ShardSpecError):
        run_mquake(
            method, loaded, RunDir(tmp_path / "s3", spec(Shard(3, 3))), settings, prompts, shard=Shard(3, 3)
        )


def test_cli_refuses_bad_shards_before_loading_the_model(data_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from benchmarks import cli
    from benchmarks.runners import cli as runner_cli

    def no_model(name):  # the checks come first: a bad spec must never cost a model load
        raise AssertionError("model loaded")

    monkeypatch.setattr(runner_cli, "load_bundle", no_model)
    zsre = str(data_dir / "KnowEdit" / "ZsRE")
    runner = CliRunner()
    for args, message in (
        (["knowedit", "--method", "none", "--data", zsre, "--shard", "3/2"], "between 1 and n"),
        (["knowedit", "--method", "none", "--data", zsre, "--shard", "two"], "expected i/n"),
        (
            ["knowedit", "--method", "none", "--data", zsre, "--limit", "2", "--shard", "1/3"],
            "cannot be split",
        ),
        (["knowedit", "--method", "none", "--data", zsre, "--sequential", "--shard", "1/2"], "sequential"),
        (["knowedit", "--method", "none", "--data", zsre, "--harness", "fast"], "--harness"),
        (
            [
                "mquake",
                "--method",
                "none",
                "--data",
                str(data_dir / "MQuAKE"),
                "--edits-per-batch",
                "all",
                "--shard",
                "1/2",
            ],
            "cannot be split",
        ),
        (["merge", str(tmp_path / "missing"), "--out", str(tmp_path / "m")], "not a finished run"),
    ):
        result = runner.invoke(cli.app, args + (["--out", str(tmp_path / "o")] if args[0] != "merge" else []))
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)


def test_row_weights_give_each_row_its_own_linear_weight():
    from benchmarks.scoring.generation import RowWeightsError, overridable, row_weights

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    x = torch.randn(3, 2, 4)
    w1 = torch.randn(3, 4)
    with row_weights(model, [{}, {"0.weight": w1}, {}]):
        y = model(x)
    plain = model(x)
    assert torch.equal(y[0], plain[0]) and torch.equal(y[2], plain[2])
    assert torch.equal(y[1], torch.relu(torch.nn.functional.linear(x[1:2], w1, model[0].bias))[0])
    assert torch.equal(model(x), plain)  # the override ends with the block
    assert overridable(model, ["0.weight"]) and not overridable(model, ["0.bias"])
    with pytest.raises(RowWeightsError):
        with row_weights(model, [{"0.bias": torch.zeros(3)}]):
            pass
