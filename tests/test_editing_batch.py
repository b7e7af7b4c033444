"""MEMIT, AlphaEdit (retain projection), SADR and FT-L on the real SmolLM2-135M (small settings)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from model_weights import snapshot, unchanged

from kedit.editing import (
    AlphaEditConfig,
    EditRequest,
    MEMITConfig,
    NullSpaceProjector,
    ParametricEditor,
    config_from_dict,
    default_config,
)
from kedit.errors import EditError

# Small statistics and no generated templates keep the default run short (benchmarks use the defaults).
N_TOKENS = 4000
REQUESTS = [
    EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English"),
    EditRequest("{} is a citizen of", "Paris Hilton", "Germany"),
    EditRequest("{}, which is located in", "Eiffel Tower", "Rome"),
]


def _small(method: str):
    return replace(default_config(method, "llama"), context_templates=(), mom2_n_tokens=N_TOKENS)


def test_memit_batch(smollm, editor, pristine):
    cfg = _small("memit")
    rec = editor.apply(REQUESTS, method="memit", config=cfg)
    assert sorted(rec.changed) == sorted(smollm.spec.down_proj_name(l) for l in cfg.layers)
    accs = [v["after"]["accuracy"] for v in rec.verification]
    assert sum(accs) / len(accs) >= 0.9, accs  # batched value optimisation, default value settings
    (values,) = rec.info.value_runs  # one batch: one value optimisation
    assert values.request_steps and max(values.request_steps) <= cfg.v_num_grad_steps
    assert all(v["after"]["prob"] > v["before"]["prob"] for v in rec.verification)
    editor.undo(rec)
    assert unchanged(smollm, pristine)


def test_alphaedit_projector_and_preserved_keys(smollm, editor, pristine):
    cfg = _small("alphaedit")
    proj = editor.projector(cfg.layers[0], N_TOKENS, cfg.nullspace_threshold, cfg.nullspace_energy)
    assert 0 < proj.dim < smollm.spec.d_ff(smollm.model)
    assert 0 < proj.energy <= cfg.nullspace_energy
    rec = editor.apply(REQUESTS, method="alphaedit", config=cfg)
    assert rec.info.nullspace[cfg.layers[0]].dim == proj.dim
    assert sum(v["success"] for v in rec.verification) >= 2, rec.verification
    # Δ lies in the null space: preserved directions (eigenvalue >= tau) are mapped to ~0.
    layer = cfg.layers[0]
    name = smollm.spec.down_proj_name(layer)
    delta = rec.delta(name)
    c = editor.second_moments([layer], N_TOKENS)[layer].double()
    eigvals, eigvecs = torch.linalg.eigh(c)
    assert rec.info.nullspace[layer].tau == proj.threshold
    kept = eigvecs[:, eigvals >= proj.threshold]
    k0 = kept * eigvals[eigvals >= proj.threshold].sqrt()  # K0 with K0 K0ᵀ = C restricted
    assert (
        float(
            (delta.double() @ k0).norm() / (delta.double() @ eigvecs * eigvals.sqrt()).norm().clamp(min=1e-30)
        )
        < 1e-3
    )
    # the record carries the edited keys for the sequential cache, and undo drops them
    assert f"keys.{layer}" in rec.extra_tensors
    assert editor.past_keys([layer])[layer].abs().sum() > 0
    editor.undo(rec)
    assert editor.past_keys([layer])[layer].abs().sum() == 0
    assert unchanged(smollm, pristine)


def test_alphaedit_mom2_in_nullspace_moves_the_update_to_weaker_corpus_directions(smollm, editor, pristine):
    """λ'·P C in the solve keeps Δ in the null space and spends less of it where corpus keys still have
    energy: E‖Δk₀‖² per unit ‖Δ‖² (= tr(Δ C Δᵀ)/‖Δ‖²) falls."""
    layer = _small("alphaedit").layers[0]
    name = smollm.spec.down_proj_name(layer)
    c = editor.second_moments([layer], N_TOKENS)[layer].double()
    share = {}
    for lam in (0.0, 1000.0):
        cfg = replace(_small("alphaedit"), mom2_in_nullspace=lam)
        rec = editor.apply(REQUESTS[:2], method="alphaedit", config=cfg)
        assert rec.config["mom2_in_nullspace"] == lam
        delta = rec.delta(name).double()
        share[lam] = float(torch.einsum("ij,jk,ik->", delta, c, delta) / delta.pow(2).sum())
        editor.undo(rec)
    assert unchanged(smollm, pristine)
    assert share[1000.0] < 0.8 * share[0.0], share


def test_empty_null_space_is_an_error(smollm, editor, pristine):
    c = editor.second_moments([3], N_TOKENS)[3]
    with pytest.raises(EditError, match="null space"):
        NullSpaceProjector.from_second_moment(c, threshold=1e-9, layer=3)
    with pytest.raises(EditError, match="null space"):
        NullSpaceProjector.from_second_moment(c, energy=1e-9, layer=3)
    for cfg in (
        replace(_small("alphaedit"), nullspace_threshold=1e-9),
        replace(_small("alphaedit"), nullspace_energy=1e-9),
    ):
        with pytest.raises(EditError, match="null space"):
            editor.apply(REQUESTS[:1], method="alphaedit", config=cfg)
    assert unchanged(smollm, pristine) and editor.live == []


def _spill_ratio(bundle, first, second, layer: int) -> float:
    """How far `second`'s update at `layer` moves `first`'s edited keys, relative to its own keys."""
    name = bundle.spec.down_proj_name(layer)
    d2 = second.delta(name).double()
    k1 = first.extra_tensors[f"keys.{layer}"].double()
    k2 = second.extra_tensors[f"keys.{layer}"].double()
    return float((d2 @ k1).norm(dim=0).max() / (d2 @ k2).norm(dim=0).min())


def test_alphaedit_sequential_batches_hold_and_spare_the_cached_keys(smollm, editor, pristine):
    """Default null-space rule, two sequential batches: every edit holds after both, the per-layer null
    space is derived from each layer's spectrum (not one absolute τ), and the second batch's update
    barely moves the outputs of the first batch's cached keys."""
    from kedit.scoring import score_targets

    cfg = _small("alphaedit")
    first = editor.apply(REQUESTS[:2], method="alphaedit", config=cfg)
    second = editor.apply(REQUESTS[2:], method="alphaedit", config=cfg)
    taus = {n.tau for n in second.info.nullspace.values()}
    assert len(taus) == len(cfg.layers)  # one τ per layer, from its own spectrum
    assert all(0 < n.energy <= cfg.nullspace_energy for n in second.info.nullspace.values())
    after = score_targets(smollm, [r.text for r in REQUESTS], [r.target for r in REQUESTS])
    assert all(s.accuracy == 1.0 for s in after), [s.accuracy for s in after]
    for layer in cfg.layers:
        ratio = _spill_ratio(smollm, first, second, layer)
        assert ratio < 0.2, (layer, ratio)
    editor.undo(second)
    editor.undo(first)
    assert unchanged(smollm, pristine)


def test_sadr_changes_the_value_optimisation(smollm):
    from kedit.editing.values import optimise_values

    cfg = replace(
        default_config("rome", "llama"),
        context_templates=(),
        sadr_weight=1e4,
        sadr_num_grad_steps=8,
        v_num_grad_steps=8,
        loss_stop=0.0,
        argmax_stop_prob=0.0,
    )
    plain = optimise_values(smollm, REQUESTS[:1], ["{}"], cfg, "mlp", cfg.layer)
    with_sadr = optimise_values(smollm, REQUESTS[:1], ["{}"], cfg, "mlp", cfg.layer, sadr=True)
    assert plain.loss_trace[0] == pytest.approx(with_sadr.loss_trace[0], rel=1e-5)  # SADR is 0 at δ=0
    assert with_sadr.loss_trace[1:] != pytest.approx(plain.loss_trace[1:], rel=1e-4)
    assert not torch.allclose(plain.delta, with_sadr.delta)


def test_ft_l_edits_within_its_bound(smollm, editor, pristine):
    cfg = default_config("ft-l", "llama")
    rec = editor.apply(REQUESTS[:1], method="ft-l", config=cfg)
    ((name, change),) = rec.steps
    assert change.kind == "rows"  # stored over the rows it changed only
    delta = rec.delta(name)
    assert float(delta.abs().max()) <= cfg.norm_constraint * (1 + 1e-3)
    v = rec.verification[0]
    assert v["after"]["prob"] > 3 * v["before"]["prob"], v
    assert rec.info.ft_steps is not None and rec.info.ft_steps >= 1
    editor.undo(rec)
    assert unchanged(smollm, pristine)
    with pytest.raises(EditError):
        editor.apply(REQUESTS[:1], method="ft-l", sadr=True)


def test_memit_config_types(editor):
    with pytest.raises(EditError, match="needs a"):
        editor.apply(REQUESTS[:1], method="alphaedit", config=MEMITConfig())
    assert isinstance(default_config("alphaedit", "gemma3"), AlphaEditConfig)
    # a record saved before λ' existed was made by AlphaEdit as published (λ' = 0), not today's default
    saved = {
        k: v for k, v in default_config("alphaedit", "llama").to_dict().items() if k != "mom2_in_nullspace"
    }
    assert config_from_dict("alphaedit", saved).mom2_in_nullspace == 0.0
    assert default_config("alphaedit", "llama").mom2_in_nullspace > 0


def test_argmax_stop_ends_the_value_optimisation_early(smollm):
    from kedit.editing.values import optimise_values

    base = replace(default_config("rome", "llama"), context_templates=(), loss_stop=0.0, v_num_grad_steps=12)
    full = optimise_values(
        smollm, REQUESTS[:1], ["{}"], replace(base, argmax_stop_prob=0.0), "mlp", base.layer
    )
    early = optimise_values(
        smollm, REQUESTS[:1], ["{}"], replace(base, argmax_stop_prob=0.5), "mlp", base.layer
    )
    assert full.steps == base.v_num_grad_steps
    assert early.steps < full.steps
    # the stop happened at the first step whose δ already makes the target likely: same trajectory
    assert early.loss_trace == pytest.approx(full.loss_trace[: early.steps], rel=1e-4)
    assert math.exp(-early.final_nll[0]) >= 0.5 - 1e-6 or early.final_loss[0] < base.loss_stop


def test_subject_runs_resume_matches_a_full_run(smollm):
    from kedit.editing.keys import SubjectRuns, build_rows, collect_at_subject

    rows = build_rows(smollm.tokenizer, REQUESTS, ["{}", "Hello there. {}"], target=False, truncate=True)
    runs = SubjectRuns(smollm, rows, batch_size=4)  # several batches
    k3, _ = runs.collect([3], [7], remember=3)
    k5, o7 = runs.collect([5], [7], resume=3, remember=5)
    ref_k, ref_o = collect_at_subject(smollm, rows, [3, 5], [7])
    assert torch.allclose(k3[3], ref_k[3], atol=1e-5)
    assert torch.allclose(k5[5], ref_k[5], atol=1e-4) and torch.allclose(o7[7], ref_o[7], atol=1e-4)


def test_second_moments_one_pass_matches_per_layer(smollm):
    from kedit.editing.covariance import compute_second_moments

    both = compute_second_moments(smollm, [2, 4], 600)
    alone = compute_second_moments(smollm, [2], 600)
    assert torch.allclose(both[2], alone[2], rtol=1e-5, atol=1e-7)
    assert both[4].shape == (smollm.spec.d_ff(smollm.model),) * 2
    assert torch.allclose(both[4], both[4].T, atol=1e-6)


def test_joint_value_batch_equals_one_request_at_a_time(smollm):
    """Requests are independent: the bucketed joint loop gives each request the δ it gets alone (checked in
    fp32: bf16 products round differently for different batch shapes)."""
    from kedit.editing.values import optimise_values

    cfg = replace(
        default_config("memit", "llama"),
        loss_stop=-1.0,
        argmax_stop_prob=0.0,
        v_num_grad_steps=4,
        value_dtype="float32",
    )
    templates = ["{}", "Hello there. {}"]
    joint = optimise_values(smollm, REQUESTS, templates, cfg, "residual", 7)
    for i, req in enumerate(REQUESTS):
        alone = optimise_values(smollm, [req], templates, cfg, "residual", 7)
        assert torch.allclose(joint.init[i], alone.init[0], atol=1e-4)
        assert float((joint.delta[i] - alone.delta[0]).norm() / alone.delta[0].norm()) < 1e-3
    assert joint.request_steps == [4, 4, 4]


def test_bf16_value_steps_track_fp32_and_leave_the_weights_bit_exact(smollm):
    from kedit.editing.values import optimise_values

    before = snapshot(smollm)
    cfg = replace(
        default_config("rome", "llama"),
        context_templates=(),
        loss_stop=-1.0,
        argmax_stop_prob=0.0,
        v_num_grad_steps=6,
    )
    f32 = optimise_values(smollm, REQUESTS[:1], ["{}"], replace(cfg, value_dtype="float32"), "mlp", cfg.layer)
    b16 = optimise_values(
        smollm, REQUESTS[:1], ["{}"], replace(cfg, value_dtype="bfloat16"), "mlp", cfg.layer
    )
    assert (f32.dtype, b16.dtype) == ("float32", "bfloat16")
    assert torch.equal(f32.init, b16.init) and b16.loss_trace[0] == f32.loss_trace[0]  # step 0 is fp32
    rel = float((b16.delta - f32.delta).norm() / f32.delta.norm())
    assert 0.0 < rel < 0.1, rel  # the later steps did run in bf16, and stayed on fp32's trajectory
    assert b16.loss_trace[-1] < 0.5 * b16.loss_trace[0]
    assert all(p.dtype == torch.float32 for p in smollm.model.parameters()) and unchanged(smollm, before)
    with pytest.raises(ValueError, match="value_dtype"):
        replace(cfg, value_dtype="float16")


def test_batched_values_reach_the_targets_and_finished_requests_leave(smollm):
    """Default MEMIT value settings on real CounterFact-style requests: every target becomes the argmax."""
    from kedit.editing.values import optimise_values

    cfg = replace(default_config("memit", "llama"), context_templates=())
    res = optimise_values(smollm, REQUESTS, ["{}"], cfg, "residual", 7)
    assert len(set(res.request_steps)) > 1 or max(res.request_steps) < cfg.v_num_grad_steps  # early stops
    assert res.steps == max(res.request_steps)
    reached = [math.exp(-x) for x in res.final_nll]
    assert sum(p >= cfg.argmax_stop_prob for p in reached) >= 0.9 * len(REQUESTS), reached


def test_edit_quality_sequential_blocks_measure_each_block_then_restore_the_model(smollm, data_dir):
    from benchmarks.studies.edit_quality import run

    before = snapshot(smollm)
    data = data_dir / "CounterFact" / "counterfact-val.json"  # the sample: tests run without ../shared
    r = run("smollm2-135m", "ft-l", 4, False, True, 1, data, bundle=smollm, block=2)
    assert r["block"] == 2 and r["sequential"]
    assert 3 <= r["cases"] == len(r["case_ids"]) == len(r["per_case"]["rewrite"])
    assert all(0.0 <= x <= 1.0 for v in r["per_case"].values() for x in v)
    assert unchanged(smollm, before)  # each block undone before the next, the last one at the end


def test_memit_on_gemma3_maps_residual_targets_through_the_post_mlp_norm():
    """Gemma3 normalises the MLP output before the residual; MEMIT's targets must go through that norm.

    Without the mapping (`kedit.editing.postnorm`) the solve treated residual units as down_proj units:
    the edits did not take and unrelated prompts changed (measured: rewrite 0.0, neighbourhood 0.27).
    """
    from kedit import load_model
    from kedit.scoring import score_targets, token_agreement

    bundle = load_model("gemma3-270m")
    assert bundle.spec.post_mlp_norm_module(bundle.model, 0) is not None
    probes = ["The capital of France is", "Water is made of hydrogen and", "The Beatles were a band from"]
    answers = [" Paris", " oxygen", " Liverpool"]
    before = score_targets(bundle, probes, answers)
    state = snapshot(bundle)
    editor = ParametricEditor(bundle)
    cfg = replace(default_config("memit", "gemma3"), context_templates=(), mom2_n_tokens=N_TOKENS)
    rec = editor.apply(REQUESTS, method="memit", config=cfg)
    assert sum(v["success"] for v in rec.verification) >= 2, rec.verification
    after = score_targets(bundle, probes, answers)
    assert min(token_agreement(b, a) for b, a in zip(before, after)) == 1.0
    editor.undo(rec)
    assert unchanged(bundle, state)


def test_alphaedit_after_memit_spares_the_memit_batch_keys(smollm, editor, pristine):
    """A MEMIT record keeps its edited keys, so AlphaEdit's past-key cache protects a MEMIT batch as well
    (the layer's mix: MEMIT for `edit_many`, AlphaEdit for later single edits)."""
    first = editor.apply(REQUESTS[:2], method="memit", config=_small("memit"))
    cfg = _small("alphaedit")
    assert set(cfg.layers) == set(_small("memit").layers)
    second = editor.apply(REQUESTS[2:], method="alphaedit", config=cfg)
    for layer in cfg.layers:
        ratio = _spill_ratio(smollm, first, second, layer)
        assert ratio < 0.2, (layer, ratio)
    editor.undo(second)
    editor.undo(first)
    assert editor.past_keys(list(cfg.layers))[cfg.layers[0]].abs().sum() == 0
    assert unchanged(smollm, pristine)
