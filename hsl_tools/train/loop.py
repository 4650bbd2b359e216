"""The training loop: SFT, HSL and DPO steps under Accelerate, on one CPU or many GPUs.

One step draws a batch of ground-truth demos (in shuffled epochs) and, for HSL, a batch from
the hindsight buffer by P(d); it accumulates gradients over `grad_accum` micro-batches and
takes one AdamW step. `accelerate launch -m hsl_tools.cli train ...` runs the same code with
DDP/FSDP; bf16 autocast is used where the hardware has it. The checkpoint folder is a
`save_pretrained` model (LoRA merged by default, so vLLM and `hf:` load it as is) with
`train.jsonl` (one line of metrics per step), `optimizer.pt` and `trainer_state.json`, which
`resume` continues from.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import set_seed
from safetensors import SafetensorError
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from hsl_tools.llm.hf import load_pretrained
from hsl_tools.progress import progress_bar
from hsl_tools.records import Demo, Trajectory
from hsl_tools.train.config import TrainConfig
from hsl_tools.train.encode import encode
from hsl_tools.train.steps import make_step

if TYPE_CHECKING:  # peft is imported only when LoRA is asked for
    from peft import PeftModel

LOG = "train.jsonl"  # in the checkpoint folder: one line of metrics per step


class EpochOrder:
    """Indices 0..n-1 in a fresh random order each epoch, forever; its position and the
    generator's state go into a checkpoint, so a resumed run draws what the killed one would
    have drawn next."""

    def __init__(self, n: int, gen: torch.Generator) -> None:
        self.n, self.gen = n, gen
        self.order: list[int] = []
        self.at = 0

    def __iter__(self) -> EpochOrder:
        return self

    def __next__(self) -> int:
        if self.at >= len(self.order):
            self.order, self.at = torch.randperm(self.n, generator=self.gen).tolist(), 0
        self.at += 1
        return self.order[self.at - 1]

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order, "at": self.at, "generator": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order, self.at = list(state["order"]), int(state["at"])
        self.gen.set_state(state["generator"])


def learning_rate(config: TrainConfig, step: int, total: int) -> float:
    """Linear warm-up, then constant or cosine down to a tenth."""
    if step <= config.warmup:
        return config.lr * step / max(1, config.warmup)
    if config.schedule == "constant":
        return config.lr
    progress = (step - config.warmup) / max(1, total - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def bf16_available() -> bool:
    """bf16 autocast where it is fast: CUDA GPUs that have it, CPUs with AVX512-BF16 or AMX
    (measured here: 1.5x faster steps for the tiny model)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe and probe())


def _accelerator(precision: str) -> Accelerator:
    """An Accelerator in this precision. Accelerate keeps one state per process and refuses
    another precision later; a lone process (tests, a notebook, a script that trains in both)
    gets a fresh state, since no training of ours outlives its `train` call. A distributed
    launch keeps its state: all its trainings are one `accelerate launch` setting."""
    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") != precision and \
            PartialState().num_processes == 1:
        AcceleratorState._reset_state()
    # on a machine with no accelerator, say so: a torchrun-style launch of N processes
    # (`accelerate launch --multi_gpu --num_processes N`) is then data-parallel over gloo
    accelerated = torch.cuda.is_available() or torch.backends.mps.is_available()
    return Accelerator(mixed_precision=precision, gradient_accumulation_steps=1,
                       cpu=not accelerated)


def train(model_dir: str, out: Path, config: TrainConfig, ground_truth: list[Demo],
          buffer: list[Demo] | None = None, rejected: list[Trajectory] | None = None,
          reference: str | None = None, resume: bool = False,
          optimizer_from: Path | None = None, fresh: bool = False) -> dict[str, float]:
    """Train and save to `out`; returns the last step's metrics. `optimizer_from`, a
    checkpoint folder, continues its optimizer state (the HSL loop's iterations are one
    optimisation: a fresh AdamW would take a full-size first step every iteration). A
    checkpoint already in `out` is continued with `resume`, replaced with `fresh`, and
    otherwise refused."""
    state_path = out / "trainer_state.json"
    if state_path.exists() and not (resume or fresh):
        step = json.loads(state_path.read_text()).get("step", "?")
        raise ValueError(f"{out} holds a checkpoint (step {step}): --resume continues it, "
                         "--fresh replaces it")
    bf16 = bf16_available() if config.bf16 is None else config.bf16
    accelerator = _accelerator("bf16" if bf16 else "no")
    state = json.loads(state_path.read_text()) if resume and state_path.exists() else {}
    set_seed(config.seed + accelerator.process_index)
    model, tokenizer = load_pretrained(str(out) if state else model_dir, torch.float32)
    if accelerator.is_main_process:
        _trim_log(out / LOG, state.get("step", 0))
    if config.lora_r:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                                 target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=config.lr, weight_decay=config.weight_decay)
    saved = out if state else optimizer_from
    if saved is not None and (saved / "optimizer.pt").exists() and not config.lora_r:
        optimizer.load_state_dict(torch.load(saved / "optimizer.pt", weights_only=True))
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    if not ground_truth:
        raise ValueError("no ground-truth demos to train on")
    gt = [encode(tokenizer, d, config.max_len) for d in ground_truth]
    gen = torch.Generator().manual_seed(config.seed)
    order = EpochOrder(len(gt), gen)
    objective = make_step(config, tokenizer, accelerator, order, gt, ground_truth, buffer,
                          rejected, reference or model_dir)
    total = config.steps or math.ceil(config.epochs * len(gt) / config.batch_size)
    done = state.get("step", 0)
    # a data-parallel run draws the same global batch in every process (one generator, one
    # seed) and each process trains on its share of the micro-batches
    world, rank = accelerator.num_processes, accelerator.process_index
    passes = config.passes(accelerator.device, world)
    micro = config.batch_size // passes
    mine = range(rank, passes, world)
    metrics: dict[str, float] = {}
    if state:  # last, so that nothing set up above draws from the restored generators
        _restore_rng(out, order)

    def checkpoint(step: int) -> None:
        """Every process hands in its part of the weights (FSDP shards them); one writes."""
        weights = None if config.lora_r else accelerator.get_state_dict(model)
        if accelerator.is_main_process:
            save(accelerator.unwrap_model(model), tokenizer, optimizer, out, config, step, order,
                 weights)

    with progress_bar(f"train {config.objective}", total=total) as bar:
        bar.skip(done)
        for step in range(done + 1, total + 1):
            started = time.perf_counter()
            lr = learning_rate(config, step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            parts: dict[str, float] = {"loss": 0.0}
            tokens = 0
            drawn = objective.draw(gen, config.batch_size)
            for k in mine:
                picked = {name: ids[k * micro:(k + 1) * micro] for name, ids in drawn.items()}
                loss, named, seen = objective.loss(model, picked)
                # gradients sync once a step; scaled by the process count, which the mean
                # over processes divides out again: the step's gradient is one process's
                with _no_sync(accelerator, model, k != mine[-1]):
                    accelerator.backward(loss * world / passes)
                parts["loss"] += loss.item() / passes
                for name, value in named.items():
                    parts[name] = parts.get(name, 0.0) + value / passes
                tokens += seen
            optimizer.step()
            optimizer.zero_grad()
            parts, tokens = _summed(accelerator, parts, tokens)
            seconds = time.perf_counter() - started
            metrics = {"step": step, **parts, "tokens": tokens, "tokens_per_s": tokens / seconds,
                       "lr": lr, "seconds": seconds, "processes": world}
            if accelerator.is_main_process:
                _log(out, metrics)
            bar.advance()
            if config.save_every and step % config.save_every == 0 and step < total \
                    and not config.lora_r:
                # LoRA runs save at the end only: saving merges the adapter into the model
                checkpoint(step)
    accelerator.wait_for_everyone()
    checkpoint(total)
    return metrics


RNG_FILE = "rng_state.pt"


def _no_sync(accelerator: Accelerator, model: torch.nn.Module, skip: bool
             ) -> contextlib.AbstractContextManager[None]:
    """DDP's no_sync for all but a step's last backward pass of this process."""
    return accelerator.no_sync(model) if skip else contextlib.nullcontext()


def _summed(accelerator: Accelerator, parts: dict[str, float], tokens: int
            ) -> tuple[dict[str, float], int]:
    """A step's metrics over every process (each holds its micro-batches' share)."""
    if accelerator.num_processes == 1:
        return parts, tokens
    names = sorted(parts)
    values = torch.tensor([parts[n] for n in names] + [tokens], dtype=torch.float64,
                          device=accelerator.device)
    total = accelerator.reduce(values, "sum").tolist()
    return dict(zip(names, total[:-1], strict=True)), int(total[-1])


def _log(out: Path, metrics: dict[str, float]) -> None:
    """Append one step's metrics to OUT/train.jsonl (a full disk names the file)."""
    log = out / LOG
    try:
        out.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(metrics) + "\n")
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(log)) from None


def _restore_rng(out: Path, order: EpochOrder) -> None:
    """Data order, sampling generator and torch's own RNG as the checkpoint left them (a
    checkpoint from before they were saved resumes with a fresh order, as it always did)."""
    path = out / RNG_FILE
    if not path.exists():
        return
    saved = torch.load(path, weights_only=True)
    order.load_state_dict(saved["order"])
    torch.set_rng_state(saved["torch"])
    if torch.cuda.is_available() and saved.get("cuda") is not None:
        torch.cuda.set_rng_state_all(saved["cuda"])


def _trim_log(log: Path, step: int) -> None:
    """Keep the log lines of the steps a resumed run starts after (a fresh run: none), so
    steps done after the last checkpoint of a killed run are not logged twice."""
    if not log.exists():
        return
    lines = [x for x in log.read_text(encoding="utf-8").splitlines(keepends=True)
             if x.strip() and json.loads(x)["step"] <= step]
    log.write_text("".join(lines), encoding="utf-8")


def save(model: PreTrainedModel | PeftModel, tokenizer: PreTrainedTokenizerBase,
         optimizer: torch.optim.Optimizer, out: Path, config: TrainConfig, step: int,
         order: EpochOrder, weights: dict[str, torch.Tensor] | None = None) -> None:
    """Write the checkpoint file by file through renames; trainer_state.json goes last, so a
    folder with it is whole. With the weights and optimizer go the data order and the RNG
    states, so a resumed run is the same run step for step. `weights`: the gathered state
    dict where the model is sharded (FSDP); None saves the model's own."""
    staging = out / ".saving"
    shutil.rmtree(staging, ignore_errors=True)
    if config.lora_r and config.merge_lora:
        model = model.merge_and_unload()
    try:
        model.save_pretrained(staging, state_dict=weights)
        tokenizer.save_pretrained(staging)
        if not config.lora_r:
            torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        torch.save({"order": order.state_dict(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available()
                    else None}, staging / RNG_FILE)
    except (OSError, SafetensorError, RuntimeError) as e:  # a full disk, as each writer says it
        shutil.rmtree(staging, ignore_errors=True)
        raise OSError(f"{out}: cannot write the checkpoint ({e}); the last one is kept"
                      ) from None
    state = {"step": step, "config": config.model_dump()}
    (staging / "trainer_state.json").write_text(json.dumps(state, indent=2))
    (out / "trainer_state.json").unlink(missing_ok=True)
    for path in sorted(staging.iterdir(), key=lambda p: p.name == "trainer_state.json"):
        os.replace(path, out / path.name)
    staging.rmdir()
