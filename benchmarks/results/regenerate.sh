#!/usr/bin/env bash
# Re-run every benchmark run behind benchmarks/RESULTS.md and re-render the report (CPU, 1 thread).
# Runs resume case by case: a finished run is skipped, an interrupted one continues. Usage (repo root):
#   bash benchmarks/results/regenerate.sh            # every run below, then the report
#   bash benchmarks/results/regenerate.sh report     # only the report, from the runs/ already there
#   bash benchmarks/results/regenerate.sh layer-all  # only the MQuAKE layer run over all 627 dev cases
#   MODEL=gemma3-270m N=5 bash benchmarks/results/regenerate.sh mquake   # one model's MQuAKE (or knowedit) cells
#   MODEL=smollm2-135m K100_METHODS="memit alphaedit" bash benchmarks/results/regenerate.sh k100   # k=100 cells
#   MODEL=gemma3-270m KALL_METHODS="memit" bash benchmarks/results/regenerate.sh kall   # k=all over all 627 cases
# MQ_METHODS, KE_METHODS, KE_KINDS narrow the cells (default: all of them).
# Limits (first N cases in file order; override through the environment). They exist because CPU is
# scarce: on the shared 2-core machine a ROME/MEMIT/AlphaEdit/FT-L edit costs 5-60 s, a MeLLo case
# 30-120 s, and Gemma-3-270M is about 2x SmolLM2's cost.
#   N_KE=5   N_MQ=10          SmolLM2-135M: KnowEdit cases per (data, method); MQuAKE cases at k=1 and k=all(N)
#   N_KE_G=3 N_MQ_G=5         Gemma-3-270M: the same
#   N_MQ100=100               MQuAKE k=100: its first 100 cases (one batch of 100 cases' edits)
#   N_MELLO=5 N_MELLO_G=3     MeLLo (MQuAKE only)
# MQuAKE k=100 (K100_METHODS) runs layer, rome, memit, alphaedit: 4-6 min each on SmolLM2, ~15 on Gemma.
# MeLLo at k=100 costs 30-120 s per case (1-3 h for 100 cases): add it with K100_METHODS="... mello"
# (resumable: an interrupted run continues with the cases not yet written).
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-.venv/bin/python}
B="nice -n ${NICE:-5} $PY -m benchmarks"
R="$PY -m benchmarks"
DATA=${KEDIT_DATA:-../shared/data}
N_KE=${N_KE:-5} N_MQ=${N_MQ:-10} N_KE_G=${N_KE_G:-3} N_MQ_G=${N_MQ_G:-5}
N_MQ100=${N_MQ100:-100} N_MELLO=${N_MELLO:-5} N_MELLO_G=${N_MELLO_G:-3}
K100_METHODS=${K100_METHODS:-"layer rome memit alphaedit"}
KALL_METHODS=${KALL_METHODS:-"layer memit alphaedit rome"}
KE_METHODS=${KE_METHODS:-"rag layer rome memit alphaedit ft-l"}
MQ_METHODS=${MQ_METHODS:-"layer rome memit alphaedit mello"}
KE_KINDS=${KE_KINDS:-"zsre recent counterfact wikibio"}
declare -A KE_DIR=([zsre]=ZsRE [recent]=wiki_recent [counterfact]=wiki_counterfact [wikibio]=WikiBio)

timed() {  # run a command; print its wall and CPU (user + sys) seconds
  /usr/bin/time -f "== %e s wall, %U s user + %S s sys CPU: $*" "$@" || echo "!! failed (status $?): $*"
}

layer_all() {  # issue #6: every dev case, all 454 distinct edits applied together (< 10 min target)
  timed $B mquake --method layer --edits-per-batch all --model smollm2-135m --out runs/mquake-kall627-layer-smollm2-135m
}

mquake_runs() {  # model, N (k=1 and k=all), N for mello
  local model=$1 n=$2 nm=$3 m lim
  for m in $MQ_METHODS; do
    lim=$n; [ "$m" = mello ] && lim=$nm
    timed $B mquake --method "$m" --edits-per-batch 1 --limit "$lim" --model "$model" --out "runs/mquake-k1-$m-$model"
    timed $B mquake --method "$m" --edits-per-batch all --limit "$lim" --model "$model" --out "runs/mquake-kall-$m-$model"
  done
}

knowedit_runs() {  # model, N
  local model=$1 n=$2 kind m
  for kind in $KE_KINDS; do
    for m in $KE_METHODS; do
      timed $B knowedit --data "$DATA/KnowEdit/${KE_DIR[$kind]}" --kind "$kind" --method "$m" --limit "$n" \
        --no-fluency --model "$model" --out "runs/knowedit-$kind-$m-$model"
    done
  done
}

kall_runs() {  # model: MQuAKE k=all over every dev case (627 cases, 454 distinct edits in one batch) for KALL_METHODS
  local model=$1 m
  for m in $KALL_METHODS; do
    timed $B mquake --method "$m" --edits-per-batch all --model "$model" --out "runs/mquake-kall627-$m-$model"
  done
}

k100_runs() {  # model: MQuAKE k=100 (one batch of the first N_MQ100 cases' edits) for K100_METHODS
  local model=$1 m
  for m in $K100_METHODS; do
    timed $B mquake --method "$m" --edits-per-batch 100 --limit "$N_MQ100" --model "$model" --out "runs/mquake-k100-$m-$model"
  done
}

case "${1:-all}" in
  report) ;;
  layer-all) layer_all ;;
  mquake) mquake_runs "${MODEL:-smollm2-135m}" "${N:-$N_MQ}" "${N_M:-$N_MELLO}" ;;    # one model's MQuAKE cells
  knowedit) knowedit_runs "${MODEL:-smollm2-135m}" "${N:-$N_KE}" ;;                 # one model's KnowEdit cells
  k100) k100_runs "${MODEL:-smollm2-135m}" ;;                                         # one model's MQuAKE k=100 cells
  kall) kall_runs "${MODEL:-smollm2-135m}" ;;                                         # one model's k=all (627) cells
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
    ;;
  *) echo "usage: $0 [all|report|layer-all|mquake|knowedit|k100|kall]" >&2; exit 2 ;;
esac
shopt -s nullglob
runs=()  # a run still in progress (or killed before its first summary) has no summary.json yet
for d in runs/mquake-* runs/knowedit-*; do
  if [ -f "$d/summary.json" ]; then runs+=("$d"); else echo "-- not in the report (no summary.json yet): $d"; fi
done
$R compare "${runs[@]}" --out benchmarks/RESULTS.md --plots benchmarks/results \
  --header benchmarks/results/HEADER.md
