"""Unlearning engine on the real SmolLM2-135M: GU forgetting, retain protection, exact undo/replay."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kedit.unlearning import (
    FactNotKnownError,
    UnlearnConfig,
    Unlearner,
    UnlearnError,
    UnlearnRecord,
    h_inner,
    npo_loss,
    project_orthogonal,
)
from kedit.unlearning.grads import GroupGradients
from kedit.unlearning.optimizer import DiagonalAdamMetric

FORGET = [("The capital of France is", "Paris")]
RETAIN = [
    ("The capital of Germany is", "Berlin"),
    ("The capital of Italy is", "Rome"),
    ("The capital of Spain is", "Madrid"),
    ("The capital of Japan is", "Tokyo"),
    ("The chemical symbol for gold is", "Au"),
    ("The official language of France is", "French"),
]
PROBES = [("The chemical symbol for iron is", "Fe")]


# -- math, no model -----------------------------------------------------------------------------


def test_projection_is_h_orthogonal_to_every_retain_gradient():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(5000, generator=gen)
    retain = torch.randn(6, 5000, generator=gen)
    retain[3] = 0.7 * retain[1] + 0.3 * retain[2]  # a dependent direction must not break the solve
    h = torch.rand(5000, generator=gen) * 10 + 0.1
    for metric in (None, h):
        p = project_orthogonal(g, retain, metric)
        for r in retain:
            cos = h_inner(p, r, metric) / (h_inner(r, r, metric).sqrt() * h_inner(g, g, metric).sqrt())
            assert abs(float(cos)) < 1e-4
        # A projection: applying it twice changes nothing, and it only removes a span(G) component.
        assert torch.allclose(project_orthogonal(p, retain, metric), p, atol=1e-3 * float(p.abs().max()))
        assert h_inner(p, p, metric) <= h_inner(g, g, metric)
    # k = 1 closed form: g − (⟨g,r⟩_H / ⟨r,r⟩_H)·r.
    r = retain[0]
    expected = g - h_inner(g, r, h) / h_inner(r, r, h) * r
    assert torch.allclose(project_orthogonal(g, r[None], h), expected, atol=1e-4)
    # Zero retain gradients are ignored rather than dividing by zero.
    assert torch.equal(project_orthogonal(g, torch.zeros(2, 5000)), g)


def test_metric_step_is_euclidean_orthogonal_to_retain_gradients():
    # The executed Adam step −lr·H·Π⊥g is what must not move the retain loss to first order.
    gen = torch.Generator().manual_seed(1)
    g, retain = torch.randn(2000, generator=gen), torch.randn(3, 2000, generator=gen)
    metric = DiagonalAdamMetric(2000)
    metric.observe(torch.cat([g[None], retain]).square().amax(0))
    step = -1e-3 * metric.h() * project_orthogonal(g, retain, metric.h())
    cos = (retain @ step) / (retain.norm(dim=1) * step.norm())
    assert float(cos.abs().max()) < 1e-4


def test_group_gradients_match_autograd_per_group():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6, bias=False), nn.Tanh(), nn.Linear(6, 3, bias=False))
    x = torch.randn(5, 2, 4)
    groups = [torch.tensor([0, 3]), torch.tensor([1, 2, 4])]
    weights = [net[0].weight, net[2].weight]
    with GroupGradients({"a": net[0], "b": net[2]}) as cap:
        flat = cap.gradients(net(x).pow(2).sum(), groups)
    for i, rows in enumerate(groups):
        expected = torch.autograd.grad(net(x[rows]).pow(2).sum(), weights)
        assert torch.allclose(flat[i], torch.cat([e.reshape(-1) for e in expected]), atol=1e-5)


def test_npo_gradient_equals_ga_at_the_reference():
    lp = torch.tensor([-0.3, -1.2], requires_grad=True)
    (g_npo,) = torch.autograd.grad(npo_loss(lp, lp.detach(), beta=0.1).sum(), lp)
    assert torch.allclose(g_npo, torch.ones(2))  # = ∂(log π)/∂(log π): GA's gradient


def test_config_rejects_bad_values():
    for bad in (
        {"objective": "kl"},
        {"lr": float("nan")},
        {"lr": 0},
        {"n_retain_directions": 0},
        {"max_steps": 0},
        {"target_max_prob": 1.5},
        {"layers": (3, 3)},
        {"params": ()},
    ):
        with pytest.raises(UnlearnError):
            UnlearnConfig(**bad)
    cfg = UnlearnConfig(layers=[4, 5], objective="simnpo")
    assert UnlearnConfig.from_dict(cfg.to_dict()) == cfg


# -- real model -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle():
    from kedit import load_model

    loaded = load_model("smollm2-135m")  # sets the thread count to the core count
    # The test box shares 2 cores between several model processes; oversubscribed intra-op threads
    # make these small training steps ~10x slower, one thread keeps this module's runtime predictable.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield loaded
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def original(bundle):
    return {n: p.detach().clone() for n, p in bundle.model.named_parameters()}


def _unchanged(bundle, original) -> bool:
    return all(torch.equal(p, original[n]) for n, p in bundle.model.named_parameters())


@pytest.fixture(scope="module")
def runs(bundle, original):
    """GU and unprojected NPO forgetting Paris from the same weights; each run undone afterwards."""
    un = Unlearner(bundle)
    out = {}
    for label, projection in (("gu", True), ("plain", False)):
        rec = un.forget(FORGET, RETAIN, UnlearnConfig(projection=projection), probes=PROBES)
        out[label] = (rec, {n: p.detach().clone() for n, p in un.parameters(rec.param_names).items()})
        un.undo(rec)
    assert _unchanged(bundle, original)
    return out


def test_gu_forgets_a_known_fact(runs):
    rec, _ = runs["gu"]
    cfg = rec.config
    (c,) = rec.forget
    assert c.rank_before == 0 and c.prob_before > 0.5
    assert c.prob_after <= cfg.target_max_prob and c.rank_after >= cfg.target_min_rank
    assert rec.verified, rec.reasons
    assert 0 < rec.steps <= cfg.max_steps
    # Every executed step was (numerically) orthogonal to the retain gradients.
    assert max(h.get("retain_cos", 0.0) for h in rec.history) < 1e-3


def test_projection_keeps_retain_facts_closer(runs):
    gu, _ = runs["gu"]
    plain, _ = runs["plain"]
    assert plain.config.is_forgotten(plain.forget[0].prob_after, plain.forget[0].rank_after)
    # Both forgot Paris; the projected run must leave the retained capitals far less changed.
    assert gu.retain_mean_abs_change <= gu.config.retain_budget
    assert gu.retain_mean_abs_change < 0.5 * plain.retain_mean_abs_change
    assert sum(c.rank_after == 0 for c in gu.retain) > sum(c.rank_after == 0 for c in plain.retain)


def test_undo_is_bit_exact_and_refuses_a_second_undo(bundle, original, runs):
    rec, _ = runs["gu"]
    assert _unchanged(bundle, original)  # the fixture undid it
    with pytest.raises(UnlearnError, match="changed since"):
        Unlearner(bundle).undo(rec)  # weights are pre, not post: a second undo is refused
    assert _unchanged(bundle, original)


def test_save_load_reapply_reproduces_the_weights(bundle, original, runs, tmp_path):
    rec, post = runs["gu"]
    un = Unlearner(bundle)
    loaded = UnlearnRecord.load(rec.save(tmp_path / rec.id))
    assert loaded.summary() == rec.summary()
    assert all(torch.equal(loaded.deltas[n], rec.deltas[n]) for n in rec.param_names)
    un.reapply(loaded)
    params = un.parameters(rec.param_names)
    assert all(torch.equal(params[n], post[n]) for n in rec.param_names)  # bit-identical to the run
    with pytest.raises(UnlearnError, match="differ from its pre-weights"):
        un.reapply(loaded)
    un.undo(loaded)
    assert _unchanged(bundle, original)


def test_tampered_record_is_rejected(runs, tmp_path):
    rec, _ = runs["gu"]
    directory = rec.save(tmp_path / "r")
    tensors = directory / "unlearn_weights.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-8])
    with pytest.raises(UnlearnError, match="does not match"):
        UnlearnRecord.load(directory)


def test_unknown_fact_is_refused_and_nothing_changes(bundle, original):
    with pytest.raises(FactNotKnownError, match="does not state") as err:
        Unlearner(bundle).forget([("The capital of France is", "Canberra")], RETAIN)
    assert "nothing to forget" in str(err.value)
    assert _unchanged(bundle, original)


def test_non_finite_training_restores_the_weights(bundle, original):
    # A fault mid-run: after the first update a NaN appears in a weight the run does not train, so the
    # next forward pass is non-finite. The trained weights must come back bit-exactly.
    model = bundle.model
    victim = bundle.spec.mlp_module(model, 29).up_proj.weight

    def inject(step, info):
        if step == 1:
            with torch.no_grad():
                victim[0, 0] = float("nan")

    try:
        with pytest.raises(UnlearnError, match="non-finite"):
            Unlearner(bundle).forget(FORGET, RETAIN[:2], UnlearnConfig(max_steps=5), on_step=inject)
        with pytest.raises(UnlearnError, match="before any change"):  # a broken model is refused up front
            Unlearner(bundle).forget(FORGET, RETAIN[:2])
    finally:
        with torch.no_grad():
            victim[0, 0] = original[f"{bundle.spec.mlp.format(29)}.up_proj.weight"][0, 0]
    assert _unchanged(bundle, original)
    assert not any(p.requires_grad for p in model.parameters())


def test_bad_input_is_refused(bundle):
    un = Unlearner(bundle)
    with pytest.raises(UnlearnError, match="retain pairs"):
        un.forget(FORGET, [])
    with pytest.raises(UnlearnError, match="both to forget and to retain"):
        un.forget(FORGET, FORGET + RETAIN[:1])
    with pytest.raises(UnlearnError, match="layers"):
        un.forget(FORGET, RETAIN, UnlearnConfig(layers=(99,)))
    with pytest.raises(UnlearnError, match="no sub-module"):
        un.forget(FORGET, RETAIN, UnlearnConfig(params=("fc9",)))
