"""Context templates: short model-generated prefixes that make keys and values robust to context.

As in ROME/MEMIT (docs/methods.md §0.2), top-k=5 samples from the seeds "The", "Therefore", "Because", "I",
"You"; each template is the sample (braces stripped) + ". {}", plus the bare "{}". They are generated
once per model and spec and cached as JSON under `cache_root()/editing/<model>/templates.json`.

>>> from kedit import load_model                              # doctest: +SKIP
>>> t = context_templates(load_model(), ((10, 5),))          # doctest: +SKIP
>>> len(t), t[0]                                             # doctest: +SKIP
(6, '{}')
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

from kedit.runtime import cache_root

SEEDS = ("The", "Therefore", "Because", "I", "You")


def model_key(bundle) -> str:
    """A cache directory name unique to the model's name and source."""
    digest = hashlib.sha256(str(bundle.source).encode()).hexdigest()[:10]
    return f"{bundle.name}-{digest}"


def editing_cache_dir(bundle) -> Path:
    return cache_root() / "editing" / model_key(bundle)


def write_json_atomic(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


@torch.no_grad()
def _generate(bundle, n_per_seed: int, length: int, seed: int, seeds: tuple[str, ...] = SEEDS) -> list[str]:
    tok, model = bundle.tokenizer, bundle.model
    out: list[str] = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for prompt in seeds:
            enc = tok([prompt] * n_per_seed, return_tensors="pt").to(bundle.device)
            n_new = max(1, length - enc["input_ids"].shape[1])
            gen = model.generate(
                **enc,
                do_sample=True,
                top_k=5,
                max_new_tokens=n_new,
                min_new_tokens=n_new,
                pad_token_id=tok.pad_token_id,
            )
            out.extend(tok.batch_decode(gen, skip_special_tokens=True))
    return [text.replace("{", " ").replace("}", " ").strip() + ". {}" for text in out]


def context_templates(bundle, spec: tuple[tuple[int, int], ...], seed: int = 0) -> list[str]:
    """["{}"] + generated templates for `spec` = ((length_tokens, n_generated), ...), cached on disk.

    ROME's reference ((5, 10), (10, 10)) gives 21 templates, ((10, 5),) 6 and ((10, 2),) 3.
    """
    key = json.dumps([list(x) for x in spec]) + f"|seed={seed}"
    path = editing_cache_dir(bundle) / "templates.json"
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached and isinstance(cached[key], list):
        return list(cached[key])
    templates = ["{}"]
    for length, n_gen in spec:
        # Fewer templates than seeds: one each from the first n_gen seeds (batch editing uses 2-3).
        seeds = SEEDS if n_gen >= len(SEEDS) else SEEDS[: max(1, n_gen)]
        templates += _generate(bundle, max(1, n_gen // len(SEEDS)), length, seed, seeds)
    cached[key] = templates
    try:
        write_json_atomic(path, cached)
    except OSError:
        pass  # a read-only cache only costs regeneration next time
    return templates
