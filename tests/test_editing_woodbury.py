"""The MEMIT and AlphaEdit solves with their fixed part factorised once (woodbury.py) against the direct
solves they replace, and the editor's cache of those factors (kept per slot while its token holds)."""

from __future__ import annotations

import torch

from kedit.editing.alphaedit import AlphaEditConfig, alphaedit_solve
from kedit.editing.memit import MEMITConfig, memit_solve
from kedit.editing.woodbury import Factorised


def _second_moment(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4 * d, d, generator=g, dtype=torch.float64) * torch.linspace(
        0.01, 1.0, d, dtype=torch.float64
    )
    return (x.T @ x / (4 * d)).float()


def _keys(d: int, n: int, seed: int) -> torch.Tensor:
    return torch.randn(d, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3.0


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_memit_solve_with_factorised_fixed_part_is_the_direct_solve():
    d, cfg = 64, MEMITConfig()
    covs = {3: _second_moment(d, 0)}
    direct = memit_solve(cfg, covs)
    built = []

    def fixed(layer, build):
        built.append(layer)
        return Factorised.of(build())

    factored = memit_solve(cfg, covs, fixed)
    for n in (1, 5):
        k = _keys(d, n, n)
        assert _close(factored(3, k), direct(3, k)) < 1e-10
    assert built == [3, 3]


def test_alphaedit_solve_with_factorised_fixed_part_is_the_direct_solve():
    d = 64
    c = _second_moment(d, 1)
    evals, evecs = torch.linalg.eigh(c.double())
    null = evecs[:, :20]
    projectors = {5: (null @ null.T).float()}
    past_k = _keys(d, 3, 7)
    for past in (None, (past_k @ past_k.T).float()):
        for lam in (0.0, 1000.0):
            cfg = AlphaEditConfig(mom2_in_nullspace=lam)
            direct = alphaedit_solve(cfg, projectors, lambda layer, p=past: p, {5: c})
            factored = alphaedit_solve(
                cfg, projectors, lambda layer, p=past: p, {5: c}, lambda layer, build: Factorised.of(build())
            )
            for n in (1, 4):
                k = _keys(d, n, 10 + n)
                assert _close(factored(5, k), direct(5, k)) < 1e-9, (past is None, lam, n)


def test_editor_keeps_one_factorisation_per_slot_while_its_token_holds(editor):
    calls = []

    def build(scale: float):
        def make() -> torch.Tensor:
            calls.append(scale)
            return scale * torch.eye(4, dtype=torch.float64)

        return make

    first = editor.factorised(("test", 0), ("a",), build(2.0))
    assert editor.factorised(("test", 0), ("a",), build(3.0)) is first and calls == [2.0]  # kept
    other = editor.factorised(("test", 0), ("b",), build(3.0))  # a new token replaces it
    assert calls == [2.0, 3.0] and other is not first
    u = torch.ones(4, 1, dtype=torch.float64)
    assert torch.allclose(
        other.solve_update(u, u).T, torch.linalg.solve(3.0 * torch.eye(4, dtype=torch.float64) + u @ u.T, u)
    )
    editor._factors.pop(("test", 0))
