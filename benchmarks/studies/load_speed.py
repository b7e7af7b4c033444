"""Model load time: GGUF dequantisation (the baseline) vs kedit's safetensors cache, same run.

python -m benchmarks.studies.load_speed [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

_FRESH = "import sys; from kedit import load_model; print(load_model(sys.argv[1]).load_seconds)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from kedit import load_model

    with tempfile.TemporaryDirectory() as cache:
        os.environ["KEDIT_CACHE"] = cache  # an empty cache: the first load must dequantise
        load_model(args.model)  # fills the cache and warms imports, so the timings below compare loads only
        t0 = time.perf_counter()
        load_model(args.model, use_cache=False)
        gguf_s = time.perf_counter() - t0
        cached = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            bundle = load_model(args.model)
            cached.append(time.perf_counter() - t0)
            assert bundle.from_cache
        # a new process pays for importing the model classes too: what a user sees on `kedit demo`
        fresh = float(
            subprocess.run(
                [sys.executable, "-c", _FRESH, args.model], capture_output=True, text=True, check=True
            ).stdout.split()[-1]
        )
    best = min(cached)
    print(f"model: {args.model}")
    print(f"GGUF dequantise load: {gguf_s:.2f} s")
    print(
        f"cached load (best of {args.repeats}): {best:.2f} s  (all: {', '.join(f'{c:.2f}' for c in cached)})"
    )
    print(f"cached load in a fresh process (imports included): {fresh:.2f} s")
    print(
        f"speed-up: {gguf_s / best:.1f}x; target < 3 s in a fresh process: {'met' if fresh < 3 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
