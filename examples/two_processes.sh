#!/usr/bin/env bash
# One sweep trained by two processes on this machine, exactly as on two hosts: each process
# trains the runs of its own devices and writes a shard; process 0 merges them into OUT.
# On two hosts, run the same command on each with --coordinator host0:PORT and its own
# --process-id, and an OUT that both can reach.
#
#   bash examples/two_processes.sh OUT [sweep flags...]      # e.g. --seeds 8 --epochs 1000
set -euo pipefail
out=$1
shift
port=${GROKJAX_PORT:-12355}
pids=()
for id in 0 1; do
    python -m grokjax.sweep "$@" --cpu-devices 1 --out "$out" --distributed \
        --coordinator "localhost:$port" --num-processes 2 --process-id "$id" &
    pids+=($!)
done
for pid in "${pids[@]}"; do
    wait "$pid"
done
