#!/usr/bin/env bash
# Muon against AdamW at each one's own learning rates, on the tasks of Tveit et al. (2025):
# (a / b) and (a + b) mod 97 on 80 % of the pairs, (a * b) mod 97 on 50 %, grokfast's
# two-layer decoder (the closest grokjax transformer to their base code), minibatch 512.
# One folder per task under OUT, trained in order of value until the time budget runs out
# (a task that cannot finish in the time left is stopped and left out). Run from the
# repository root on a GPU:
#   bash experiments/muon_own_setting.sh results/muon-own-setting [BUDGET_SECONDS]
# SEEDS, EPOCHS, LRS and WDS override the grid (a tiny one checks the script on a CPU), TASKS
# the tasks (op:fraction, space-separated).
set -uo pipefail
out=${1:?usage: experiments/muon_own_setting.sh OUT [BUDGET_SECONDS]}
budget=${2:-480}
seeds=${SEEDS:-8}
epochs=${EPOCHS:-300}
lrs=${LRS:-3e-4,1e-3,3e-3,1e-2,3e-2}
wds=${WDS:-0.1,1}
tasks=${TASKS:-div:0.8 mul:0.5 add:0.8}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# float32 matmuls in full precision, as PyTorch computes them (JAX may use TF32 on a GPU)
export JAX_DEFAULT_MATMUL_PRECISION=highest

python3 -c "import jax; print(jax.__version__, jax.devices())" 2>&1 | tee "$out/devices.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$out/devices.txt"

for task in $tasks; do
    set -- ${task/:/ }
    left=$((budget - SECONDS))
    if [ "$left" -lt 60 ]; then echo "skipped $1 at $2: ${left}s left" | tee -a "$out/log.txt"; continue; fi
    start=$SECONDS
    timeout "$left" python3 -m grokjax.sweep --preset grokfast --op "$1" --train-frac "$2" \
        --optimizer adamw,muon --lr "$lrs" --muon-adam-lr 1e-3 --wd "$wds" --seeds "$seeds" \
        --epochs "$epochs" --eval-every 2 --quiet --out "$out/$1" 2>&1 | tee "$out/$1.txt"
    echo "$1 at $2: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" | tee -a "$out/log.txt"
done
