#!/usr/bin/env bash
# The engines page (leaderboard/published/engines): hf against vLLM's CPU build, on tiny-arith (500 arith test
# problems) and on a Qwen3-0.6B-shaped model with random weights (its accuracy is 0 by construction: the rows
# are there for memory and latency at a deployed model's shapes; 20 problems, the same prompts for every row).
# Every row runs with the engines' defaults (each engine's dtype as measured on this CPU class, vLLM bound to
# every core the harness may use). Rows vLLM cannot serve on this CPU are refused in one line and skipped.
#
#   STORE=/work/runs/engines.db SHAPED=/work/runs/qwen3-0.6b-shaped scripts/publish_engines_page.sh
set -u
STORE=${STORE:-runs/engines.db}
SHAPED=${SHAPED:-runs/qwen3-0.6b-shaped}
OUT=${OUT:-leaderboard/published/engines}
[ -d "$SHAPED" ] || python scripts/real_shaped_model.py --shape qwen3-0.6b --out "$SHAPED"
for engine in hf vllm; do
  harness run --store "$STORE" --engine "$engine" --strategy none
  harness run --store "$STORE" --engine "$engine" --strategy smoothquant --bits 8 --act-bits 8
  harness run --store "$STORE" --engine "$engine" --model "$SHAPED" --limit 20 --strategy none --no-divergence
  harness run --store "$STORE" --engine "$engine" --model "$SHAPED" --limit 20 --strategy rtn --bits 8 --act-bits 8 \
    --strategy-opt group_size=0 --no-divergence
  harness run --store "$STORE" --engine "$engine" --model "$SHAPED" --limit 20 --strategy rtn --bits 4 --no-divergence \
    || echo "(refused on this CPU: see the line above)"
done
