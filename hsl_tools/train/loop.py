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
from collections.abc import Iterator
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
from hsl_tools.train.data import from_trajectory
from hsl_tools.train.encode import Encoded, encode
from hsl_tools.train.objectives import (
    collate,
    demo_nll,
    dpo_loss,
    hsl_loss,
    sampling_weights,
    sequence_logp,
)

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

    def enc(demos: list[Demo], mask: bool) -> list[Encoded]:
        return [encode(tokenizer, d, config.max_len, mask=mask) for d in demos]

    if not ground_truth:
        raise ValueError("no ground-truth demos to train on")
    gt = enc(ground_truth, True)
    gen = torch.Generator().manual_seed(config.seed)
    order = EpochOrder(len(gt), gen)
    hindsight: list[Encoded] = []
    weights = None
    if config.objective == "hsl":
        if not buffer:
            raise ValueError("HSL needs a non-empty hindsight buffer")
        hindsight = enc(buffer, config.mask)
        weights = sampling_weights(buffer, config.alpha, config.uniform)
        if weights.sum() <= 0:
            raise ValueError("no demo in the buffer has a relevant action")
    pairs: list[tuple[Encoded, Encoded]] = []
    ref_model = None
    if config.objective == "dpo":
        pairs = _dpo_pairs(tokenizer, ground_truth, rejected or [], config.max_len)
        ref_model, _ = load_pretrained(reference or model_dir, torch.float32)
        ref_model.to(accelerator.device).eval().requires_grad_(False)
    total = config.steps or math.ceil(config.epochs * len(gt) / config.batch_size)
    done = state.get("step", 0)
    # a data-parallel run draws the same global batch in every process (one generator, one
    # seed) and each process trains on its share of the micro-batches
    world, rank = accelerator.num_processes, accelerator.process_index
    passes = config.passes(accelerator.device, world)
    micro = config.batch_size // passes
    mine = range(rank, passes, world)
    metrics: dict[str, float] = {}
    pad = tokenizer.pad_token_id
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
            drawn = _draw(config, gen, order, weights, len(pairs))
            for k in mine:
                picked = {name: ids[k * micro:(k + 1) * micro] for name, ids in drawn.items()}
                if config.objective == "dpo":
                    chosen, rejected_ = zip(*[pairs[i] for i in picked["pairs"]], strict=True)
                    batches = [collate(list(b), pad, accelerator.device)
                               for b in (chosen, rejected_)]
                    # the reference in the policy's precision: at step 1 the two are the
                    # same model, so their margins must cancel exactly (bf16 against fp32
                    # left a bias of ~0.02 nats in every pair)
                    with torch.no_grad(), accelerator.autocast():
                        ref = [sequence_logp(ref_model, b) for b in batches]
                    pol = [sequence_logp(model, b) for b in batches]
                    loss = dpo_loss(pol[0], pol[1], ref[0], ref[1], config.beta)
                    _add_dpo_drift(parts, pol, ref, passes)
                    tokens += sum(int(b["attention_mask"].sum()) for b in batches)
                else:
                    sft_batch = collate([gt[i] for i in picked["gt"]], pad, accelerator.device)
                    sft = demo_nll(model, sft_batch)
                    tokens += int(sft_batch["attention_mask"].sum())
                    loss = sft.mean()
                    parts["loss_sft"] = parts.get("loss_sft", 0.0) + sft.mean().item() / passes
                    if config.objective == "hsl":
                        hs_batch = collate([hindsight[i] for i in picked["hindsight"]], pad,
                                           accelerator.device)
                        hs = demo_nll(model, hs_batch)
                        tokens += int(hs_batch["attention_mask"].sum())
                        loss = hsl_loss(sft, hs, config.lam)
                        parts["loss_hsl"] = parts.get("loss_hsl", 0.0) + hs.mean().item() / passes
                # gradients sync once a step; scaled by the process count, which the mean
                # over processes divides out again: the step's gradient is one process's
                with _no_sync(accelerator, model, k != mine[-1]):
                    accelerator.backward(loss * world / passes)
                parts["loss"] += loss.item() / passes
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


def _draw(config: TrainConfig, gen: torch.Generator, order: Iterator[int],
          weights: torch.Tensor | None, n_pairs: int) -> dict[str, list[int]]:
    """The indices one step trains on, drawn whole before it is cut into micro-batches, so
    that `grad_accum` changes memory and speed, not which demos the step sees."""
    n = config.batch_size
    if config.objective == "dpo":
        return {"pairs": torch.randint(n_pairs, (n,), generator=gen).tolist()}
    drawn = {"gt": [next(order) for _ in range(n)]}
    if config.objective == "hsl":
        drawn["hindsight"] = torch.multinomial(weights, n, replacement=True,
                                               generator=gen).tolist()
    return drawn


def _add_dpo_drift(parts: dict[str, float], policy: list[torch.Tensor],
                   reference: list[torch.Tensor], micro_batches: int) -> None:
    """How far the policy's log-likelihood of the chosen (expert) and rejected (agent) sides
    has moved from the reference's, in nats per sequence, and how often chosen moved above
    rejected. DPO only asks for the gap; both sides falling far (chosen too) is the collapse
    that a too-large learning rate brings."""
    chosen, rejected = (p.detach() - r for p, r in zip(policy, reference, strict=True))
    for name, value in (("logp_chosen_drift", chosen.mean()),
                        ("logp_rejected_drift", rejected.mean()),
                        ("pair_accuracy", (chosen > rejected).float().mean())):
        parts[name] = parts.get(name, 0.0) + value.item() / micro_batches


def _dpo_pairs(tokenizer: PreTrainedTokenizerBase, ground_truth: list[Demo],
               rejected: list[Trajectory], max_len: int) -> list[tuple[Encoded, Encoded]]:
    """(expert demo, the agent's failed trajectory) for every task that has both."""
    by_task = {d.task_id: d for d in ground_truth if d.task_id}
    pairs = [(encode(tokenizer, by_task[t.task_id], max_len),
              encode(tokenizer, from_trajectory(t, "self_imitation"), max_len))
             for t in rejected if t.task_id in by_task and not t.success]
    if not pairs:
        raise ValueError("DPO needs failed agent trajectories on tasks that have expert demos")
    return pairs


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
