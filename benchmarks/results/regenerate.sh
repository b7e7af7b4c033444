#!/usr/bin/env bash
# Re-run the benchmark runs behind benchmarks/RESULTS.md (SmolLM2-135M, CPU) and re-render the report.
# Runs resume: a finished run directory is skipped case by case. Usage (repository root):
#   bash benchmarks/results/regenerate.sh            # all runs, then the report
#   bash benchmarks/results/regenerate.sh report     # only the report, from the runs/ already there
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-.venv/bin/python}
B="$PY -m benchmarks"
ZSRE=${KEDIT_DATA:-../shared/data}/KnowEdit/ZsRE
if [ "${1:-}" != report ]; then
  $B mquake --method rag   --edits-per-batch 1   --limit 20 --out runs/mquake-k1-rag
  $B mquake --method rag   --edits-per-batch all --limit 20 --out runs/mquake-kall-rag
  $B knowedit --data "$ZSRE" --method rag   --limit 20 --no-fluency --out runs/knowedit-zsre-rag
  $B knowedit --data "$ZSRE" --method layer --limit 10 --no-fluency --out runs/knowedit-zsre-layer
  $B mquake --method layer --edits-per-batch all --limit 10 --out runs/mquake-kall-layer
  $B mquake --method mello --edits-per-batch all --limit 5  --out runs/mquake-kall-mello
  $B mquake --method mello --edits-per-batch 1   --limit 5  --out runs/mquake-k1-mello
  $B knowedit --data "$ZSRE" --method rome  --limit 10 --no-fluency --out runs/knowedit-zsre-rome
  $B mquake --method rome  --edits-per-batch all --limit 10 --out runs/mquake-kall-rome
  $B mquake --method layer --edits-per-batch 1   --limit 10 --out runs/mquake-k1-layer
  $B mquake --method rome  --edits-per-batch 1   --limit 10 --out runs/mquake-k1-rome
fi
$B compare runs/mquake-* runs/knowedit-* --out benchmarks/RESULTS.md --plots benchmarks/results \
  --header benchmarks/results/HEADER.md
