"""Model runtime on the real embedded models: loading, specs, GGUF cache, embeddings, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kedit.errors import ModelNotFoundError, UnsupportedArchitectureError
from kedit.runtime import EMBEDDED, load_model, spec_for
from kedit.runtime.loader import _cache_dir_for
from kedit.runtime.sources import smollm2_gguf

ROUND_TRIP = "The mother tongue of Danielle Darrieux is French; 3.14 apples,  two spaces\nnew line."


def _check_spec_resolves(bundle) -> None:
    model, spec = bundle.model, bundle.spec
    n = spec.n_layers(model)
    assert n > 0
    for i in (0, n - 1):
        down = spec.down_proj_module(model, i)
        weight = spec.down_weight(model, i)
        assert weight.shape == (spec.d_model(model), spec.d_ff(model))
        # the view shares storage with the live parameter, so editing it edits the model
        assert weight.data_ptr() == down.weight.data_ptr()
        assert isinstance(spec.attention_module(model, i), nn.Module)
        assert isinstance(spec.mlp_module(model, i), nn.Module)
    assert isinstance(spec.final_norm_module(model), nn.Module)
    assert spec.lm_head_module(model).weight.shape[1] == spec.d_model(model)


def _check_round_trip(tokenizer) -> None:
    ids = tokenizer(ROUND_TRIP, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == ROUND_TRIP
    # transformers < 5.24 turned every space of this GGUF's tokenizer into <|endoftext|>
    assert tokenizer.eos_token_id not in ids


def test_smollm2_loads_answers_and_resolves_spec(smollm):
    assert smollm.spec.family == "llama"
    assert smollm.spec.n_layers(smollm.model) == 30
    assert smollm.spec.tied_embeddings(smollm.model)
    assert smollm.tokenizer.padding_side == "right"
    _check_spec_resolves(smollm)
    _check_round_trip(smollm.tokenizer)
    assert "Paris" in smollm.complete("The capital of France is", max_new_tokens=4)


def test_gemma3_loads_and_resolves_spec():
    bundle = load_model("gemma3-270m")
    assert bundle.spec.family == "gemma3"
    assert bundle.spec.n_layers(bundle.model) == 18
    _check_spec_resolves(bundle)
    _check_round_trip(bundle.tokenizer)
    assert bundle.complete("The capital of France is", max_new_tokens=6).strip()


def test_tiny_gpt2_directory_loads_with_transposed_down_proj(tmp_path, smollm):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=len(smollm.tokenizer))
    GPT2LMHeadModel(config).save_pretrained(tmp_path, safe_serialization=True)
    smollm.tokenizer.save_pretrained(tmp_path)
    bundle = load_model(tmp_path)
    assert bundle.spec.family == "gpt2" and bundle.spec.down_proj_transposed
    _check_spec_resolves(bundle)
    # Conv1D stores (d_ff, d): the spec's view must be its transpose, sharing storage
    conv = bundle.spec.down_proj_module(bundle.model, 1)
    assert conv.weight.shape == (128, 32)
    view = bundle.spec.down_weight(bundle.model, 1)
    view[0, 0] += 1.0
    assert conv.weight[0, 0] == view[0, 0]


def test_gguf_cache_round_trip_and_corrupt_cache_rebuilt(tmp_path, monkeypatch, smollm):
    monkeypatch.setenv("KEDIT_CACHE", str(tmp_path))
    fresh = load_model("smollm2-135m")  # dequantises from GGUF into the empty cache
    assert not fresh.from_cache
    cached = load_model("smollm2-135m")
    assert cached.from_cache
    enc = smollm.tokenizer(
        ["The capital of France is", "Danielle Darrieux was born in"], return_tensors="pt", padding=True
    )
    with torch.no_grad():
        a = fresh.model(**enc).logits
        b = cached.model(**enc).logits
    assert torch.equal(a, b)
    # damage the cached weights: the next load must notice and rebuild, giving the same logits
    entry = _cache_dir_for(smollm2_gguf())
    weights = entry / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.truncate(weights.stat().st_size // 2)
    rebuilt = load_model("smollm2-135m")
    assert not rebuilt.from_cache
    with torch.no_grad():
        assert torch.equal(rebuilt.model(**enc).logits, a)
    assert load_model("smollm2-135m").from_cache
    shutil.rmtree(entry)


def test_unknown_model_name_lists_known_names():
    with pytest.raises(ModelNotFoundError) as err:
        load_model("no-such-model")
    for name in EMBEDDED:
        assert name in str(err.value)


def test_directory_without_weights_or_config(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ModelNotFoundError, match="safetensors"):
        load_model(tmp_path)


def test_gguf_of_unsupported_architecture_is_named(tmp_path):
    import gguf

    path = tmp_path / "tiny-mamba.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedArchitectureError, match="mamba"):
        load_model(path)


def test_unknown_architecture_names_the_class():
    class TinyRecurrentLM(nn.Module):
        pass

    with pytest.raises(UnsupportedArchitectureError, match="TinyRecurrentLM"):
        spec_for(TinyRecurrentLM())


def test_sentence_embeddings_are_unit_vectors_and_semantic(embedder):
    vecs = embedder.encode(
        [
            "The Eiffel Tower is in Paris.",
            "Paris is home to the Eiffel Tower.",
            "Bananas are rich in potassium.",
        ]
    )
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.3
    assert embedder.encode([]).shape == (0, 384)


def test_cli_reports_bad_model_without_traceback(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kedit.cli",
            "query",
            "Who?",
            "--model",
            "no-such-model",
            "--kb",
            str(tmp_path / "kb"),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 2
    assert "unknown model 'no-such-model'" in proc.stderr and proc.stdout == ""  # stdout only under --json
    assert "Traceback" not in proc.stdout + proc.stderr


def test_onnx_embedding_backend_matches_torch_and_rebuilds_a_damaged_export(tmp_path, monkeypatch):
    from kedit.runtime.embeddings import SentenceEmbedder, _onnx_cache_dir

    monkeypatch.setenv("KEDIT_CACHE", str(tmp_path))
    texts = ["Paris is the capital of France.", "Who plays the guitar?", "Toko Yasuda " * 200]
    onnx = SentenceEmbedder(backend="onnx")
    plain = SentenceEmbedder(backend="torch")
    assert (onnx.backend, plain.backend, onnx.dim) == ("onnx", "torch", plain.dim)
    assert np.abs(onnx.encode(texts) - plain.encode(texts)).max() < 1e-5  # incl. truncation at 256 tokens
    exported = _onnx_cache_dir(onnx.model_path) / "model.onnx"
    exported.write_bytes(exported.read_bytes()[:1000])  # a damaged export is detected and redone
    again = SentenceEmbedder(backend="onnx")
    assert exported.stat().st_size > 1_000_000
    assert np.abs(again.encode(texts) - plain.encode(texts)).max() < 1e-5
    with pytest.raises(ValueError, match="unknown embedding backend 'tf'"):
        SentenceEmbedder(backend="tf")


def _tiny_llama(vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config).eval()


def test_wrap_model_edits_a_model_built_in_memory_and_undo_is_exact(tmp_path, smollm, embedder):
    from kedit import KnowledgeLayer, wrap_model
    from kedit.editing import EditRequest, ParametricEditor, ROMEConfig
    from kedit.weights import EDIT

    model = _tiny_llama(len(smollm.tokenizer))
    bundle = wrap_model(model, smollm.tokenizer, name="tiny-llama")
    assert bundle.spec.family == "llama" and bundle.weights_dir is None and bundle.name == "tiny-llama"
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    editor = ParametricEditor(bundle)
    cfg = ROMEConfig(layer=1, mom2_adjustment=False, context_templates=(), v_num_grad_steps=5)
    rec = editor.apply(
        [EditRequest("{} is a citizen of", "Paris Hilton", "Germany")], method="rome", config=cfg
    )
    name = rec.changed[0]
    assert rec.steps[0][1].kind == "lowrank" and not torch.equal(model.get_parameter(name), before[name])
    assert bundle.history._base[name] is not None  # no files to read the base from: one copy of that matrix
    editor.undo(rec)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert bundle.history._base == {}  # nothing held once no change is live
    # a (model, tokenizer) pair opens a knowledge base; its stack reopens onto the same in-memory model
    with KnowledgeLayer.open(tmp_path / "kb", model=(model, smollm.tokenizer), embedder=embedder) as kl:
        kl.weights.push(
            EDIT,
            kl.weights.editor.apply(
                [EditRequest("{} is a citizen of", "Paris Hilton", "Germany")], method="rome", config=cfg
            ),
        )
        edited = {n: p.detach().clone() for n, p in model.named_parameters()}
        kl.weights.editor.remove(kl.weights.changes[0].record)  # as a new process: the base model
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    with KnowledgeLayer.open(tmp_path / "kb", model=(model, smollm.tokenizer), embedder=embedder) as kl:
        assert all(torch.equal(p, edited[n]) for n, p in model.named_parameters())
        kl.weights.remove(kl.weights.changes[0].id)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_wrap_model_reads_the_base_from_the_models_safetensors(tmp_path, smollm):
    from transformers import AutoModelForCausalLM

    from kedit import wrap_model
    from kedit.editing import EditRequest, ParametricEditor, ROMEConfig

    _tiny_llama(len(smollm.tokenizer)).save_pretrained(tmp_path, safe_serialization=True)
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.bfloat16)
    bundle = wrap_model(model, smollm.tokenizer)
    assert bundle.weights_dir == tmp_path and bundle.dtype == torch.bfloat16
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    editor = ParametricEditor(bundle)
    cfg = ROMEConfig(layer=1, mom2_adjustment=False, context_templates=(), v_num_grad_steps=5)
    rec = editor.apply(
        [EditRequest("{} is a citizen of", "Paris Hilton", "Germany")], method="rome", config=cfg
    )
    assert bundle.history._base == {rec.changed[0]: None}  # read back from the safetensors: nothing held
    editor.undo(rec)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_wrap_model_refuses_an_architecture_without_a_spec(smollm):
    from transformers import OPTConfig, OPTForCausalLM

    from kedit import wrap_model

    config = OPTConfig(
        vocab_size=len(smollm.tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        ffn_dim=64,
        num_attention_heads=2,
        word_embed_proj_dim=32,
        max_position_embeddings=64,
    )
    with pytest.raises(UnsupportedArchitectureError, match="OPTForCausalLM"):
        wrap_model(OPTForCausalLM(config), smollm.tokenizer)


def test_load_model_dtype_and_device_arguments():
    from kedit.errors import DeviceError
    from kedit.runtime.loader import resolve_dtype

    assert resolve_dtype("bf16") == torch.bfloat16 and resolve_dtype(None) == torch.float32
    with pytest.raises(ValueError, match="unsupported dtype"):
        load_model("smollm2-135m", dtype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="cuda"):
            load_model("smollm2-135m", device="cuda")


def test_greedy_many_bans_first_tokens_only_where_asked(smollm):
    from kedit.runtime.generation import greedy_many

    prompts = ["The capital of France is", "The capital of Italy is"]
    plain = greedy_many(smollm, prompts, 3)
    banned = greedy_many(smollm, prompts, 3, banned_first=[{plain[0][0]}, set()])
    assert banned[0][0] != plain[0][0]  # the banned token is not the first, the next best is
    assert banned[1] == plain[1]  # a prompt with nothing banned decodes as before
    with pytest.raises(ValueError):
        greedy_many(smollm, prompts, 3, banned_first=[set()])
