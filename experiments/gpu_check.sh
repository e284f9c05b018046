#!/usr/bin/env bash
# The GPU check: on a machine with a GPU and grokjax's dependencies already installed
# (jax with CUDA, flax, optax, numpy, matplotlib, tqdm, pytest, torch), run the fast
# tests, the benchmark, one 256-run sweep and what checkpoints cost, writing
# everything into the folder given as the argument. Run from the repository root:
#   bash experiments/gpu_check.sh results/gpu-check
set -uo pipefail
out=${1:?usage: experiments/gpu_check.sh RESULTS_DIR}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

python3 -c "import jax; print(jax.__version__, jax.devices())" 2>&1 | tee "$out/devices.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$out/devices.txt"

# fast subset: everything but the subprocess-heavy CLI, robustness and cross-check files
timeout 150 python3 -m pytest -q tests/test_data.py tests/test_model.py tests/test_optim.py tests/test_metrics.py \
    tests/test_train.py tests/test_analysis.py 2>&1 | tee "$out/tests.txt"

timeout 200 python3 -m grokjax.bench --runs 1,8,32,128,1024 --out "$out/bench.md" 2>&1 | tee "$out/bench.txt"

# 256 runs (64 seeds x 4 weight decays) of the study configuration, 1000 epochs, timed end to end
{ time python3 -m grokjax.sweep --seeds 64 --wd 0,1e-4,3e-4,1e-3 --epochs 1000 --out "$out/sweep" --quiet; } \
    2>&1 | tee "$out/sweep.txt"

# what checkpoints cost: 10 chunks of 5 epochs without, after every chunk and at the default cadence, at 1,024 and
# 4,096 runs (1.4 and 5.6 GiB a checkpoint; 16,384 runs would need 3 x 23 GiB on disk while writing)
for runs in 1024 4096; do
    timeout 240 python3 -m grokjax.bench --checkpoints --runs "$runs" --epochs 5 --out "$out/checkpoints-$runs.md" \
        2>&1 | tee "$out/checkpoints-$runs.txt"
done
