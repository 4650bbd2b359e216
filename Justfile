# hsl-tools tasks. `just --list` shows them; every recipe runs inside the project's .venv.
set shell := ["bash", "-euo", "pipefail", "-c"]

export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")
# torch's OpenMP threads collapse on two busy cores; one thread is faster there.
export OMP_NUM_THREADS := env_var_or_default("OMP_NUM_THREADS", "1")

# List the recipes.
default:
    @just --list

# Create .venv and install hsl-tools with its dev tools (CPU torch 2.13.0 where the wheel is local).
setup:
    python3 -m venv .venv
    .venv/bin/pip install -e '.[dev]'

# The main job on the embedded default: expert demos and a weak agent's episodes in the household world.
demo out="runs/demo":
    hsl collect --env household --split train --policy expert -n 200 --out {{out}}/expert-train.jsonl
    hsl show {{out}}/expert-train.jsonl --limit 1 --oracle
    hsl collect --env household --split seen --policy random -n 50 --out {{out}}/random-seen.jsonl
    hsl show {{out}}/random-seen.jsonl --limit 1 --achieving

# Run the whole test suite (slow end-to-end tests included).
test *args:
    python -m pytest -q {{args}}

# Lint.
lint:
    ruff check hsl_tools tests benchmarks

# Benchmarks: throughput numbers measured in one run.
bench:
    python benchmarks/bench_collect.py -n 1000
