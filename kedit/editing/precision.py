"""Reduced-precision matrix products for the value optimisation (bf16 weights, fp32 residual stream).

A ROME/MEMIT value step on a small model is bound by streaming the weights of every layer above the
injection point from memory (~14 rows x 26 layers: each product reads a 3.5 MB matrix to do 25 MFLOP).
Holding those matrices in bfloat16 halves the bytes, and CPUs with AVX512-BF16/AMX multiply them
natively; measured in benchmarks/EDITING.md ("ROME speed"): same value steps and edit outcomes, 1.4-1.5x
faster per edit on SmolLM2. Only the 2-D weights of the layers in the window and the head's product
run in bf16; norms, softmax, residual additions, the loss and δ itself stay fp32 (autocast promotes the
residual sum back to fp32). The first step (δ = 0, which records the references: keys, m₀, the KL and
SADR baselines) runs in fp32, so everything written into the model is computed from fp32 references.
Weights are swapped back to the very same fp32 tensors afterwards: the model is bit-identical. While
an edit runs the model must not serve other forwards (the editor, like any in-place edit, owns it).

>>> import torch
>>> lin = torch.nn.Linear(4, 4)
>>> ptr = lin.weight.data_ptr()
>>> with low_precision_weights([lin], torch.bfloat16):
...     lin.weight.dtype
torch.bfloat16
>>> lin.weight.dtype, lin.weight.data_ptr() == ptr   # the same fp32 storage is back, nothing rounded
(torch.float32, True)
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from torch import nn

VALUE_DTYPES = ("auto", "float32", "bfloat16")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX-BF16); Linux /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return False  # no /proc/cpuinfo (not Linux): the products stay fp32
    return False


def resolve_value_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` is bf16 on a CPU with native bf16 products (emulated bf16 is slower than fp32), else fp32."""
    if name not in VALUE_DTYPES:
        raise ValueError(f"value_dtype must be one of {', '.join(VALUE_DTYPES)}, not {name!r}")
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else torch.float32


@contextlib.contextmanager
def low_precision_weights(modules: list[nn.Module], dtype: torch.dtype) -> Iterator[None]:
    """Inside the block, the 2-D weights of `modules` are `dtype` copies and products autocast to `dtype`.

    On exit (also on error) every parameter gets its original tensor object back: nothing is rounded.
    """
    if dtype == torch.float32:
        yield
        return
    saved: dict[int, tuple[nn.Parameter, torch.Tensor]] = {}
    device_type = "cpu"
    try:
        for module in modules:
            for param in module.parameters():
                if param.dim() == 2 and id(param) not in saved:
                    saved[id(param)] = (param, param.data)
                    device_type = param.device.type
                    param.data = param.data.to(dtype)
        with torch.autocast(device_type, dtype=dtype):
            yield
    finally:
        for param, original in saved.values():
            param.data = original
