#!/usr/bin/env bash
# Re-run every benchmark run behind benchmarks/RESULTS.md and re-render the report (CPU, 1 thread).
# Runs are kept in the repository (benchmarks/results/runs/<run>/: run.json, summary.json, summary.md,
# cases.jsonl), so `report` rebuilds the report from any checkout. A finished run is skipped and an
# interrupted one resumes case by case; delete a run's directory to measure it again. Usage (repo root):
#   bash benchmarks/results/regenerate.sh            # every run below, then the report
#   bash benchmarks/results/regenerate.sh report     # only the report, from the runs already there
#   bash benchmarks/results/regenerate.sh layer-all  # only the MQuAKE layer run over all 627 dev cases
#   MODEL=gemma3-270m N=5 bash benchmarks/results/regenerate.sh mquake   # one model's MQuAKE (or knowedit) cells
#   MODEL=smollm2-135m K100_METHODS="memit alphaedit" bash benchmarks/results/regenerate.sh k100   # k=100 cells
#   MODEL=gemma3-270m KALL_METHODS="memit" bash benchmarks/results/regenerate.sh kall   # k=all over all 627 cases
#   MODEL=smollm2-135m N_SEQ=10 bash benchmarks/results/regenerate.sh seq   # sequential-editing cells (--sequential)
# MQ_METHODS, KE_METHODS, KE_KINDS, SEQ_KE_METHODS, SEQ_MQ_METHODS narrow the cells (default: all of them).
# The report gives every metric its 95 % bootstrap interval over cases (from summary.json, or from the run's
# cases.jsonl for older runs) and marks values not distinguishable from their column's best.
# Limits (first N cases in file order; override through the environment). They exist because CPU is
# scarce: on the 2-core machine a ROME/MEMIT/AlphaEdit/FT-L edit costs 5-60 s, a MeLLo case 20-60 s,
# and Gemma-3-270M is about 2x SmolLM2's cost.
#   N_KE=5   N_MQ=10          SmolLM2-135M: KnowEdit cases per (data, method); MQuAKE cases at k=1 and k=all(N)
#   N_KE_G=3 N_MQ_G=5         Gemma-3-270M: the same
#   N_MQ100=100               MQuAKE k=100: its first 100 cases (one batch of 100 cases' edits)
#   N_MELLO=5 N_MELLO_G=3     MeLLo at k=1 and k=all(N)
#   N_MELLO100=100 N_MELLO100_G=40   MeLLo at k=100: all 100 cases' edits in its store, the first N scored
#                             (--probe-per-batch), as a full Gemma run would take over an hour
# MQuAKE k=100 (K100_METHODS) runs layer, rome, memit, alphaedit (4-10 min each on SmolLM2, ~2x on Gemma)
# and mello (25 CPU s a case on SmolLM2: ~45 min; 47 on Gemma: ~35 min for its 40 cases).
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-.venv/bin/python}
B="nice -n ${NICE:-5} $PY -m benchmarks"
R="$PY -m benchmarks"
DATA=${KEDIT_DATA:-../shared/data}
# Runs live in the repository (summary + per-case records), so the report can be rebuilt from any checkout.
RUNS=${RUNS:-benchmarks/results/runs}
N_KE=${N_KE:-5} N_MQ=${N_MQ:-10} N_KE_G=${N_KE_G:-3} N_MQ_G=${N_MQ_G:-5}
N_MQ100=${N_MQ100:-100} N_MELLO=${N_MELLO:-5} N_MELLO_G=${N_MELLO_G:-3}
N_MELLO100=${N_MELLO100:-100} N_MELLO100_G=${N_MELLO100_G:-40}
K100_METHODS=${K100_METHODS:-"layer rome memit alphaedit mello"}
KALL_METHODS=${KALL_METHODS:-"layer memit alphaedit rome"}
KE_METHODS=${KE_METHODS:-"rag layer rome memit alphaedit ft-l"}
MQ_METHODS=${MQ_METHODS:-"layer rome memit alphaedit mello"}
KE_KINDS=${KE_KINDS:-"zsre recent counterfact wikibio"}
N_SEQ=${N_SEQ:-10}  # sequential cells: the first N_SEQ cases, every edit applied one after another, scored at the end
SEQ_KE_METHODS=${SEQ_KE_METHODS:-"rag layer rome memit alphaedit ft-l"}
SEQ_MQ_METHODS=${SEQ_MQ_METHODS:-"layer rome memit alphaedit"}
declare -A KE_DIR=([zsre]=ZsRE [recent]=wiki_recent [counterfact]=wiki_counterfact [wikibio]=WikiBio)

timed() {  # run a command; print its wall and CPU (user + sys) seconds
  /usr/bin/time -f "== %e s wall, %U s user + %S s sys CPU: $*" "$@" || echo "!! failed (status $?): $*"
}

cell() {  # run directory, benchmark arguments: run (or resume) one cell; a finished run is skipped
  local out=$1; shift
  if grep -qs '"complete": true' "$out/summary.json"; then echo "-- finished, skipped: $out"; return; fi
  timed $B "$@" --out "$out"
}

layer_all() {  # issue #6: every dev case, all 454 distinct edits applied together (< 10 min target)
  cell "$RUNS/mquake-kall627-layer-smollm2-135m" mquake --method layer --edits-per-batch all --model smollm2-135m
}

mquake_runs() {  # model, N (k=1 and k=all), N for mello
  local model=$1 n=$2 nm=$3 m lim
  for m in $MQ_METHODS; do
    lim=$n; [ "$m" = mello ] && lim=$nm
    cell "$RUNS/mquake-k1-$m-$model" mquake --method "$m" --edits-per-batch 1 --limit "$lim" --model "$model"
    cell "$RUNS/mquake-kall-$m-$model" mquake --method "$m" --edits-per-batch all --limit "$lim" --model "$model"
  done
}

knowedit_runs() {  # model, N
  local model=$1 n=$2 kind m
  for kind in $KE_KINDS; do
    for m in $KE_METHODS; do
      cell "$RUNS/knowedit-$kind-$m-$model" knowedit --data "$DATA/KnowEdit/${KE_DIR[$kind]}" --kind "$kind" \
        --method "$m" --limit "$n" --model "$model"
    done
  done
}

kall_runs() {  # model: MQuAKE k=all over every dev case (627 cases, 454 distinct edits in one batch) for KALL_METHODS
  local model=$1 m
  for m in $KALL_METHODS; do
    cell "$RUNS/mquake-kall627-$m-$model" mquake --method "$m" --edits-per-batch all --model "$model"
  done
}

k100_runs() {  # model: MQuAKE k=100 (one batch of the first N_MQ100 cases' edits) for K100_METHODS
  local model=$1 m probe
  for m in $K100_METHODS; do
    probe=$N_MQ100
    if [ "$m" = mello ]; then probe=$N_MELLO100; [ "$model" = gemma3-270m ] && probe=$N_MELLO100_G; fi
    if [ "$probe" -lt "$N_MQ100" ]; then  # all 100 cases' edits in the store, the first $probe cases scored
      cell "$RUNS/mquake-k100-$m-probe$probe-$model" mquake --method "$m" --edits-per-batch 100 --limit "$N_MQ100" \
        --probe-per-batch "$probe" --model "$model"
    else
      cell "$RUNS/mquake-k100-$m-$model" mquake --method "$m" --edits-per-batch 100 --limit "$N_MQ100" --model "$model"
    fi
  done
}

seq_runs() {  # model: sequential editing (--sequential): KnowEdit ZsRE and MQuAKE k=1, N_SEQ cases each
  local model=$1 m
  for m in $SEQ_KE_METHODS; do
    cell "$RUNS/knowedit-zsre-$m-seq-$model" knowedit --data "$DATA/KnowEdit/ZsRE" --kind zsre --method "$m" \
      --limit "$N_SEQ" --model "$model" --sequential
  done
  for m in $SEQ_MQ_METHODS; do
    cell "$RUNS/mquake-k1-$m-seq-$model" mquake --method "$m" --edits-per-batch 1 --limit "$N_SEQ" --model "$model" \
      --sequential
  done
}

case "${1:-all}" in
  report) ;;
  layer-all) layer_all ;;
  mquake) mquake_runs "${MODEL:-smollm2-135m}" "${N:-$N_MQ}" "${N_M:-$N_MELLO}" ;;    # one model's MQuAKE cells
  knowedit) knowedit_runs "${MODEL:-smollm2-135m}" "${N:-$N_KE}" ;;                 # one model's KnowEdit cells
  k100) k100_runs "${MODEL:-smollm2-135m}" ;;                                         # one model's MQuAKE k=100 cells
  kall) kall_runs "${MODEL:-smollm2-135m}" ;;                                         # one model's k=all (627) cells
  seq) seq_runs "${MODEL:-smollm2-135m}" ;;                                           # one model's sequential cells
  all)
    layer_all
    mquake_runs smollm2-135m "$N_MQ" "$N_MELLO"
    knowedit_runs smollm2-135m "$N_KE"
    mquake_runs gemma3-270m "$N_MQ_G" "$N_MELLO_G"
    knowedit_runs gemma3-270m "$N_KE_G"
    k100_runs smollm2-135m
    k100_runs gemma3-270m
    kall_runs smollm2-135m
    kall_runs gemma3-270m
    seq_runs smollm2-135m
    ;;
  *) echo "usage: $0 [all|report|layer-all|mquake|knowedit|k100|kall|seq]" >&2; exit 2 ;;
esac
shopt -s nullglob
runs=()  # a run still in progress (or killed before its first summary) has no summary.json yet
for d in "$RUNS"/mquake-* "$RUNS"/knowedit-*; do
  if [ -f "$d/summary.json" ]; then runs+=("$d"); else echo "-- not in the report (no summary.json yet): $d"; fi
done
$R compare "${runs[@]}" --out benchmarks/RESULTS.md --plots benchmarks/results \
  --header benchmarks/results/HEADER.md
