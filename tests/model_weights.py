"""Weight snapshots for tests that edit the shared model and must leave it bit-exactly as it was."""

from __future__ import annotations

import torch


def snapshot(bundle) -> dict[str, torch.Tensor]:
    """A copy of every tensor of the model's state dict."""
    return {k: v.detach().clone() for k, v in bundle.model.state_dict().items()}


def unchanged(bundle, state: dict[str, torch.Tensor]) -> bool:
    """True if every tensor of the model equals its copy in `state`, bit for bit."""
    return all(torch.equal(v, state[k]) for k, v in bundle.model.state_dict().items())
