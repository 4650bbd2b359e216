#!/usr/bin/env bash
# What only a GPU shows, in one run (issue 26): batched against one-at-a-time LLM relabeling
# on 64 trajectories, and one HSL step at the paper's shape with a Llama-3.2-1B-shaped agent,
# first with the rule relabeler, then with a 1B relabeler. The relabeler is random llama-1b
# weights on the hf backend, so nothing is downloaded and no vLLM is needed: its replies are
# noise, but it generates to the token limit every time, an even load.
# Run:  bash benchmarks/gpu_checks.sh [LOG_DIR]     (default runs/gpu-checks; ~10 min, estimated)
#       PRESET=tiny bash benchmarks/gpu_checks.sh     (the same checks with tiny models, on a CPU)
# Each check has its own time limit, so one that hangs leaves the others' numbers.
set -uo pipefail
log=${1:-runs/gpu-checks}
python=${PYTHON:-python3}
preset=${PRESET:-llama-1b}
relabeler=$(mktemp -d)/relabeler  # ~5 GB at llama-1b: not beside the logs
mkdir -p "$log"
export PYTHONUNBUFFERED=1

check() {  # check NAME SECONDS COMMAND...: run it, its output to the screen and LOG/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    timeout "$limit" "$@" 2>&1 | tee "$log/$name.log"
    echo "== $name: exit ${PIPESTATUS[0]}"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$log/gpu.txt" ||
    echo "no GPU: $preset models on the CPU"
check init-relabeler 120 "$python" -m hsl_tools.cli init-model --preset "$preset" \
    --out "$relabeler"
check relabel-batching 240 "$python" benchmarks/bench_relabel.py -n 64 --model "hf:$relabeler"
check step-rules 150 "$python" benchmarks/bench_step.py --preset "$preset"
check step-llm 150 "$python" benchmarks/bench_step.py --preset "$preset" \
    --relabeler "hf:$relabeler"
rm -rf "$(dirname "$relabeler")"
