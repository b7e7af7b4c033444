"""Architecture specs: where, inside each model family, the modules the editors need live.

An editor never hard-codes `model.layers.5.mlp.down_proj`; it asks the spec. Adding a family is adding
one `ArchSpec` to `SPECS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from kedit.errors import UnsupportedArchitectureError


def _weight(module: nn.Module) -> torch.Tensor:
    """A linear or embedding module's weight (typed: `nn.Module.__getattr__` says Tensor | Module)."""
    return cast(torch.Tensor, module.weight)


@dataclass(frozen=True)
class ArchSpec:
    """Module paths of one model family; `{}` stands for the layer index.

    `down_proj` is the matrix ROME/MEMIT edit: its input is the MLP key k (width d_ff) and its output
    the MLP value (width d). `down_proj_transposed` is True where the weight is stored (d_ff, d), as in
    GPT-2's Conv1D; `down_weight()` always hands back a (d, d_ff) view of the same storage.
    """

    family: str
    layers: str
    down_proj: str
    mlp: str
    attention: str
    final_norm: str
    lm_head: str
    embed_tokens: str
    down_proj_transposed: bool = False
    post_mlp_norm: str | None = None

    def n_layers(self, model: nn.Module) -> int:
        return len(cast(nn.ModuleList, model.get_submodule(self.layers)))

    def layer(self, model: nn.Module, index: int) -> nn.Module:
        return model.get_submodule(f"{self.layers}.{index}")

    def down_proj_module(self, model: nn.Module, index: int) -> nn.Module:
        return model.get_submodule(self.down_proj.format(index))

    def down_proj_name(self, index: int) -> str:
        """Name of the edited weight in `model.state_dict()`."""
        return self.down_proj.format(index) + ".weight"

    def down_weight(self, model: nn.Module, index: int) -> torch.Tensor:
        """The edited matrix as a (d, d_ff) view sharing storage with the model's parameter."""
        weight = _weight(self.down_proj_module(model, index))
        return weight.data.T if self.down_proj_transposed else weight.data

    def post_mlp_norm_module(self, model: nn.Module, index: int) -> nn.Module | None:
        return model.get_submodule(self.post_mlp_norm.format(index)) if self.post_mlp_norm else None

    def mlp_module(self, model: nn.Module, index: int) -> nn.Module:
        return model.get_submodule(self.mlp.format(index))

    def attention_module(self, model: nn.Module, index: int) -> nn.Module:
        return model.get_submodule(self.attention.format(index))

    def final_norm_module(self, model: nn.Module) -> nn.Module:
        return model.get_submodule(self.final_norm)

    def lm_head_module(self, model: nn.Module) -> nn.Module:
        return model.get_submodule(self.lm_head)

    def embeddings_module(self, model: nn.Module) -> nn.Module:
        return model.get_submodule(self.embed_tokens)

    def tied_embeddings(self, model: nn.Module) -> bool:
        return (
            _weight(self.lm_head_module(model)).data_ptr()
            == _weight(self.embeddings_module(model)).data_ptr()
        )

    def d_model(self, model: nn.Module) -> int:
        return self.down_weight(model, 0).shape[0]

    def d_ff(self, model: nn.Module) -> int:
        return self.down_weight(model, 0).shape[1]


def _llama_like(family: str, post_mlp_norm: str | None = None) -> ArchSpec:
    """The module paths every Llama-shaped decoder in transformers uses."""
    return ArchSpec(
        family=family,
        layers="model.layers",
        down_proj="model.layers.{}.mlp.down_proj",
        mlp="model.layers.{}.mlp",
        attention="model.layers.{}.self_attn",
        final_norm="model.norm",
        lm_head="lm_head",
        embed_tokens="model.embed_tokens",
        post_mlp_norm=post_mlp_norm,
    )


LLAMA = _llama_like("llama")
_POST_FF_NORM = "model.layers.{}.post_feedforward_layernorm"
GEMMA3 = _llama_like("gemma3", _POST_FF_NORM)
GEMMA = _llama_like("gemma")
GEMMA2 = _llama_like("gemma", _POST_FF_NORM)
MISTRAL = _llama_like("mistral")
QWEN2 = _llama_like("qwen2")
GPT2 = ArchSpec(
    family="gpt2",
    layers="transformer.h",
    down_proj="transformer.h.{}.mlp.c_proj",
    mlp="transformer.h.{}.mlp",
    attention="transformer.h.{}.attn",
    final_norm="transformer.ln_f",
    lm_head="lm_head",
    embed_tokens="transformer.wte",
    down_proj_transposed=True,
)

# Keyed by the transformers model class name.
SPECS: dict[str, ArchSpec] = {
    "LlamaForCausalLM": LLAMA,
    "Gemma3ForCausalLM": GEMMA3,
    "Gemma3ForConditionalGeneration": GEMMA3,
    "GemmaForCausalLM": GEMMA,
    "Gemma2ForCausalLM": GEMMA2,
    "MistralForCausalLM": MISTRAL,
    "Qwen2ForCausalLM": QWEN2,
    "GPT2LMHeadModel": GPT2,
}


def spec_for(model: nn.Module) -> ArchSpec:
    """The ArchSpec of `model`, checked against its real modules.

    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> spec_for(GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2))).family
    'gpt2'
    """
    name = type(model).__name__
    spec = SPECS.get(name)
    if spec is None:
        known = ", ".join(sorted(SPECS))
        raise UnsupportedArchitectureError(
            f"kedit cannot edit a {name}: no architecture spec for it (known: {known})"
        )
    try:
        spec.down_proj_module(model, 0)
        spec.final_norm_module(model)
        spec.lm_head_module(model)
        spec.post_mlp_norm_module(model, 0)
    except AttributeError as exc:
        raise UnsupportedArchitectureError(
            f"{name} does not have the module layout of the '{spec.family}' spec: {exc}"
        ) from exc
    return spec
