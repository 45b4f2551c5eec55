#!/usr/bin/env bash
# PPO vs symmetric PPO vs scaled PPO on the offline `sentiment` RLHF task, with the clean reward model and
# with reward noise (the centred score's sign flipped with probability 0.3, training only), 3 seeds.
# The task's CPU preset (LoRA r 16 on SmolLM2-135M, 15 iterations of 16 prompts; about 5 minutes a run on
# 2 cores). Re-running skips finished runs and resumes interrupted ones. Then:
#   symrl report runs/studies/rlhf_sentiment --out studies/results/rlhf_sentiment
set -euo pipefail
OUT=${OUT:-runs/studies/rlhf_sentiment}
SEEDS=${SEEDS:-"0 1 2"}
SYMRL=${SYMRL:-symrl}  # a command, e.g. "python -m symrl.cli"
for seed in $SEEDS; do
  for noise in clean flip:0.3; do
    for algo in PPO SPPO scaled_PPO; do
      case $algo in
        PPO) args=(--algo ppo) ;;
        SPPO) args=(--algo sppo) ;;                      # alpha 0.5, beta 0.4, z -1 (the task's preset)
        scaled_PPO) args=(--algo ppo --policy-coef 0.9) ;;  # alpha + beta*|z|: SPPO's gradient scale, no RCE term
      esac
      [[ $noise != clean ]] && args+=(--reward-noise "$noise")
      dir="$OUT/sentiment/${noise/:/_}/$algo/seed$seed"
      if grep -qs '"finished"' "$dir/status.json"; then echo "skip $dir"; continue; fi
      if [[ -f $dir/checkpoints/last.pt ]]; then mode=(--resume); else mode=(--overwrite); fi
      echo "run $dir"
      $SYMRL rlhf --task sentiment "${args[@]}" --seed "$seed" --out "$dir" "${mode[@]}" --no-progress
    done
  done
done
