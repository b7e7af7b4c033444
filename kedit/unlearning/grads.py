"""Per-group gradients of the trained weight matrices from a single backward pass.

For a bias-free linear map y = W x the weight gradient of a loss is Σ_t δ_t x_tᵀ over the positions t
(δ = ∂loss/∂y). The examples of a batch do not interact, so hooking each trained module's input x and
output gradient δ lets one forward/backward pass over forget and retain rows give the gradient of each
group of rows separately: the forget gradient and each retain direction GU projects against.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _is_transposed(module: nn.Module) -> bool:
    # GPT-2's Conv1D stores its weight as (in, out) and computes x @ W.
    return type(module).__name__ == "Conv1D"


class GroupGradients:
    """Capture inputs/outputs of `modules` during a forward pass, then form per-group weight gradients.

    >>> lin = nn.Linear(3, 2, bias=False); lin.weight.requires_grad_(True)   # doctest: +SKIP
    >>> with GroupGradients({"lin": lin}) as cap:                             # doctest: +SKIP
    ...     loss = lin(torch.randn(4, 1, 3)).sum(dim=(1, 2))
    ...     flat = cap.gradients(loss.sum(), [torch.tensor([0, 1]), torch.tensor([2, 3])])
    >>> flat.shape                                                            # doctest: +SKIP
    torch.Size([2, 6])
    """

    def __init__(self, modules: dict[str, nn.Module]):
        self.modules = modules
        self._inputs: dict[str, torch.Tensor] = {}
        self._outputs: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> GroupGradients:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._inputs.clear()
        self._outputs.clear()

    def _hook(self, name: str):
        def hook(module, args, output):
            self._inputs[name] = args[0].detach()
            self._outputs[name] = output

        return hook

    def gradients(self, loss: torch.Tensor, groups: Sequence[torch.Tensor]) -> torch.Tensor:
        """(len(groups), P): row i is ∂loss/∂θ restricted to the batch rows `groups[i]`, flattened in
        `modules` order (each weight as `weight.reshape(-1)`).

        `loss` must be a sum of per-row terms (each row's term depends on that row only).
        """
        names = list(self.modules)
        missing = [n for n in names if n not in self._outputs]
        if missing:
            raise RuntimeError(f"no forward pass went through {missing}")
        deltas = torch.autograd.grad(loss, [self._outputs[n] for n in names])
        per_group: list[list[torch.Tensor]] = [[] for _ in groups]
        for name, delta in zip(names, deltas):
            x = self._inputs[name]
            module = self.modules[name]
            for i, rows in enumerate(groups):
                d, xi = delta[rows].flatten(0, -2), x[rows].flatten(0, -2)  # (rows·T, out), (rows·T, in)
                grad = xi.T @ d if _is_transposed(module) else d.T @ xi
                per_group[i].append(grad.reshape(-1))
        self._inputs.clear()
        self._outputs.clear()
        return torch.stack([torch.cat(parts) for parts in per_group])
