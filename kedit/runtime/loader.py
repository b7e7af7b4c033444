"""Load a causal LM for kedit: an embedded name, a local Hugging Face directory, or a .gguf file.

GGUF weights are dequantised to float32 by transformers, which is slow (15-50 s); the result is cached
as a plain Hugging Face directory (config + safetensors + tokenizer) under `cache_root()/models/`, so a
second load takes well under 3 s. A cache entry is trusted only if its completion marker matches the
files on disk; anything partial or unreadable is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kedit.errors import DeviceError, ModelNotFoundError, UnsupportedArchitectureError
from kedit.runtime.history import WeightHistory
from kedit.runtime.sources import DEFAULT_MODEL, EMBEDDED, cache_root
from kedit.runtime.spec import ArchSpec, spec_for

log = logging.getLogger(__name__)

# GGUF `general.architecture` values whose transformers class kedit has a spec for.
GGUF_ARCHITECTURES = {"llama", "gemma3", "gemma", "gemma2", "gpt2", "qwen2", "mistral"}
_CACHE_FORMAT = 1


def configure_threads() -> None:
    """Use every core for intra-op work unless the user has set a thread count."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))


@dataclass
class ModelBundle:
    """A loaded model with what kedit needs beside it.

    >>> bundle = load_model("smollm2-135m")            # doctest: +SKIP
    >>> bundle.complete("The capital of France is")   # doctest: +SKIP
    ' Paris.'
    """

    model: Any  # a transformers PreTrainedModel (an nn.Module with generate/config/save_pretrained)
    tokenizer: Any  # its PreTrainedTokenizer
    spec: ArchSpec | None  # None: the architecture has no spec; see extra['spec_error']
    name: str
    source: str
    load_seconds: float
    from_cache: bool = False
    extra: dict = field(default_factory=dict)
    weights_dir: Path | None = None  # safetensors holding the weights as loaded (undo's base weights)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def history(self) -> WeightHistory:
        """The live weight changes of this model (edits and unlearning runs), shared by every editor."""
        if "history" not in self.extra:
            self.extra["history"] = WeightHistory(self.model, self.weights_dir)
        return self.extra["history"]

    @torch.no_grad()
    def complete(self, prompt: str, max_new_tokens: int = 8) -> str:
        """Greedy continuation of `prompt` (the continuation only)."""
        enc = self.tokenizer(prompt, return_tensors="pt").to(self.device)
        out = self.model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.tokenizer.pad_token_id
        )
        return self.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def _finish_tokenizer(tokenizer) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Editors need right padding (EasyEdit #390); generation code sets left padding locally.
    tokenizer.padding_side = "right"


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """`None` (float32), a torch dtype or its name: 'bf16', 'bfloat16', 'fp16', 'float16', 'fp32'."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        found = dtype if dtype in _DTYPES.values() else None
    else:
        found = _DTYPES.get(str(dtype).lower().removeprefix("torch."))
    if found is None:
        raise ValueError(f"unsupported dtype {dtype!r} (use float32, bfloat16 or float16)")
    return found


def check_device(device: str | torch.device | None) -> None:
    """Refuse, before anything is loaded, a device this machine does not have."""
    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} asked for, but this machine has no CUDA GPU (torch sees none)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {device!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)"
        )


def _place(model: nn.Module, device: str | torch.device | None, dtype: torch.dtype) -> nn.Module:
    if next(model.parameters()).dtype != dtype:
        model = model.to(dtype)
    if device is not None:
        try:
            model = model.to(torch.device(device))
        except (RuntimeError, AssertionError) as exc:  # e.g. CUDA asked for on a machine without it
            raise DeviceError(f"cannot place the model on device {device!r}: {exc}") from exc
    return model


def _finish(
    model: nn.Module,
    tokenizer,
    name: str,
    source: str,
    t0: float,
    from_cache: bool,
    weights_dir: Path | None = None,
) -> ModelBundle:
    model.eval()
    model.requires_grad_(False)
    _finish_tokenizer(tokenizer)
    # A model kedit cannot edit still loads (it can answer, and facts go to the store); the editors
    # refuse it with the reason kept here.
    extra: dict = {}
    try:
        spec = spec_for(model)
    except UnsupportedArchitectureError as exc:
        spec, extra["spec_error"] = None, str(exc)
        log.warning("kedit: %s", exc)
    return ModelBundle(
        model,
        tokenizer,
        spec,
        name,
        source,
        time.perf_counter() - t0,
        from_cache,
        extra,
        weights_dir=weights_dir,
    )


def wrap_model(model: nn.Module, tokenizer, *, name: str | None = None) -> ModelBundle:
    """A bundle for a transformers causal LM the user has already loaded (any device and dtype).

    The architecture must have an ArchSpec (else UnsupportedArchitectureError). Undo rebuilds edited
    matrices from the model's safetensors when `model.name_or_path` is a local directory holding the
    same weights; otherwise the first change to a matrix keeps one copy of that matrix. The tokenizer
    gets a pad token if it has none and right padding (the editors need it).

    >>> from transformers import AutoModelForCausalLM, AutoTokenizer           # doctest: +SKIP
    >>> bundle = wrap_model(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path))  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    spec_for(model)  # raises UnsupportedArchitectureError naming the class
    origin = str(getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "") or "")
    weights_dir = (
        Path(origin) if origin and Path(origin).is_dir() and any(Path(origin).glob("*.safetensors")) else None
    )
    label = name or (Path(origin).name if origin else type(model).__name__)
    return _finish(model, tokenizer, label, origin or "memory", t0, from_cache=False, weights_dir=weights_dir)


def gguf_architecture(path: Path) -> str:
    """`general.architecture` of a GGUF file, read from its header only."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path), "r")
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a readable GGUF"
        raise ModelNotFoundError(f"{path} is not a readable GGUF file: {exc}") from exc
    fld = reader.fields.get("general.architecture")
    if fld is None:
        raise ModelNotFoundError(f"{path} has no general.architecture field")
    return bytes(fld.parts[fld.data[0]]).decode("utf-8")


def _cache_dir_for(gguf_path: Path) -> Path:
    st = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{st.st_size}|{int(st.st_mtime)}|{_CACHE_FORMAT}".encode())
    return cache_root() / "models" / f"{gguf_path.stem}-{key.hexdigest()[:12]}"


def _marker_ok(directory: Path) -> bool:
    marker = directory / "kedit-complete.json"
    try:
        sizes = json.loads(marker.read_text())["sizes"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all((directory / f).is_file() and (directory / f).stat().st_size == n for f, n in sizes.items())


def _load_hf_dir(directory: Path, attn_implementation: str, dtype: torch.dtype = torch.float32):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory), use_fast=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(directory), dtype=dtype, attn_implementation=attn_implementation, trust_remote_code=False
    )
    return model, tokenizer


def _write_cache(model: Any, tokenizer, directory: Path) -> None:
    """Write an HF directory atomically: build in a temp dir beside it, then rename."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=directory.name + ".tmp", dir=directory.parent))
    try:
        # transformers refuses to serialise a model it still marks as GGUF-quantised; the tensors are
        # plain fp32 after dequantisation, so drop the marker.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        sizes = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
        (tmp / "kedit-complete.json").write_text(json.dumps({"format": _CACHE_FORMAT, "sizes": sizes}))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _load_gguf(
    path: Path,
    name: str,
    attn_implementation: str,
    use_cache: bool,
    t0: float,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> ModelBundle:
    cached = _cache_dir_for(path)
    if use_cache and _marker_ok(cached):
        try:
            model, tokenizer = _load_hf_dir(cached, attn_implementation, dtype)
            model = _place(model, device, dtype)
            return _finish(model, tokenizer, name, str(path), t0, from_cache=True, weights_dir=cached)
        except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt, whatever the damage
            log.warning("kedit: model cache %s is unreadable (%s); rebuilding it", cached, exc)
    # Checked only when dequantising: a cache entry exists only for a supported architecture, and
    # parsing the GGUF header costs ~2.5 s.
    arch = gguf_architecture(path)
    if arch not in GGUF_ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"{path.name}: GGUF architecture '{arch}' is not supported "
            f"(supported: {', '.join(sorted(GGUF_ARCHITECTURES))})"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("kedit: dequantising %s to float32 (once; cached afterwards)", path.name)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent),
        gguf_file=path.name,
        dtype=torch.float32,
        attn_implementation=attn_implementation,
        trust_remote_code=False,
    )
    written = None
    if use_cache:
        try:
            _write_cache(model, tokenizer, cached)
            written = cached
        except OSError as exc:
            log.warning("kedit: could not write model cache %s: %s", cached, exc)
    model = _place(model, device, dtype)
    return _finish(model, tokenizer, name, str(path), t0, from_cache=False, weights_dir=written)


def _check_hf_dir(directory: Path) -> None:
    missing = []
    if not (directory / "config.json").is_file():
        missing.append("config.json")
    has_safetensors = any(directory.glob("*.safetensors"))
    if not has_safetensors:
        if any(directory.glob("*.bin")) or any(directory.glob("*.pt")):
            raise ModelNotFoundError(
                f"{directory} holds only pickled weights (.bin/.pt); kedit loads safetensors only "
                "(convert with `model.save_pretrained(dir, safe_serialization=True)`)"
            )
        missing.append("model weights (*.safetensors)")
    if not (any(directory.glob("tokenizer*.json")) or (directory / "tokenizer.model").is_file()):
        missing.append("tokenizer files (tokenizer.json / tokenizer_config.json)")
    if missing:
        raise ModelNotFoundError(
            f"{directory} is not a loadable model directory: missing {', '.join(missing)}"
        )


def load_model(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str = "eager",
    use_cache: bool = True,
) -> ModelBundle:
    """Load a model by embedded name (`smollm2-135m`, `gemma3-270m`), HF directory or .gguf path.

    `device`: where the model runs ('cpu', 'cuda', 'cuda:1'; default CPU). `dtype`: its weights' dtype
    ('float32' by default, 'bfloat16', 'float16'); editing keeps keys, covariances and solves in float32.

    Loading is offline (`HF_HUB_OFFLINE=1` is set if unset) and never runs remote code. Attention is
    `eager` by default because the SADR regulariser reads attention probabilities.

    >>> bundle = load_model("smollm2-135m")            # doctest: +SKIP
    >>> bundle.spec.family, bundle.spec.n_layers(bundle.model)  # doctest: +SKIP
    ('llama', 30)
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    configure_threads()
    t0 = time.perf_counter()
    torch_dtype = resolve_dtype(dtype)
    check_device(device)
    text = str(name_or_path)
    if text in EMBEDDED:
        path = EMBEDDED[text].locate()
        return _load_gguf(Path(path), text, attn_implementation, use_cache, t0, device, torch_dtype)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _load_gguf(path, path.stem, attn_implementation, use_cache, t0, device, torch_dtype)
    if path.is_dir():
        _check_hf_dir(path)
        try:
            model, tokenizer = _load_hf_dir(path, attn_implementation, torch_dtype)
        except ValueError as exc:
            raise UnsupportedArchitectureError(
                f"{path}: transformers cannot build this model: {exc}"
            ) from exc
        model = _place(model, device, torch_dtype)
        return _finish(model, tokenizer, path.name, str(path), t0, from_cache=False, weights_dir=path)
    if path.exists():
        raise ModelNotFoundError(f"{path} is neither a .gguf file nor a model directory")
    known = ", ".join(sorted(EMBEDDED))
    raise ModelNotFoundError(
        f"unknown model '{text}': not an embedded model name ({known}) and no such file or directory"
    )


def clear_model_cache() -> None:
    """Remove every cached dequantised model (they are rebuilt on the next load)."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(cache_root() / "models")
