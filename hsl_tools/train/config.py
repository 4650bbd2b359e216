"""What one training run does, validated once when it is built: `hsl train` builds it from its
options, a recipe from its sections (so a bad value fails when the recipe loads, not hours
later when the stage starts). Unknown keys and every bad value are refused together."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PositiveInt,
    ValidationError,
    model_validator,
)

from hsl_tools.records import every_error

Objective = Literal["sft", "hsl", "dpo"]
# micro-batches per step (the step's batch is cut into them; the step is the same); "auto": one
# demo per pass on a CPU, where padding costs its full compute (~2x, `just bench`), one
# micro-batch a process on a GPU
def _grad_accum(value: object) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    if isinstance(value, int | str) and not isinstance(value, bool) and \
            str(value).strip().isdigit() and int(value) > 0:
        return int(value)
    raise ValueError(f"want auto or a whole number above 0, not {value!r}")


GradAccum = Annotated[int | Literal["auto"], PlainValidator(_grad_accum)]


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    objective: Objective = "sft"
    steps: PositiveInt | None = None  # optimisation steps; else `epochs` over the ground truth
    epochs: float = Field(3.0, gt=0)
    batch_size: PositiveInt = 32
    grad_accum: GradAccum = "auto"
    lr: float = Field(2e-5, gt=0)
    schedule: Literal["constant", "cosine"] = "constant"  # cosine decays to lr/10 over the run
    warmup: int = Field(0, ge=0)  # steps of linear warm-up
    weight_decay: float = Field(0.0, ge=0)
    lam: float = Field(0.3, ge=0)  # HSL: weight of the hindsight loss
    alpha: float = Field(0.8, ge=0)  # HSL: sampling exponent
    mask: bool = True  # False: NoMask ablation (z_t = 1 everywhere)
    uniform: bool = False  # True: UniWeight ablation
    beta: float = Field(0.1, gt=0)  # DPO
    max_len: PositiveInt = 4096
    seed: int = 42
    lora_r: int = Field(0, ge=0)  # 0: full fine-tune
    lora_alpha: PositiveInt = 16
    merge_lora: bool = True
    bf16: bool | None = None  # None: where the hardware does it fast
    save_every: int = Field(100, ge=0)  # steps between checkpoints to resume from (0: end only)

    @model_validator(mode="after")
    def _micro_batches_divide_the_batch(self) -> TrainConfig:
        if self.grad_accum != "auto" and self.batch_size % self.grad_accum:
            raise ValueError(f"grad_accum {self.grad_accum} does not divide batch_size "
                             f"{self.batch_size}")
        return self

    def passes(self, device: torch.device, processes: int = 1) -> int:
        """Micro-batches per step on `device`, over all `processes` of a data-parallel run
        (each takes every processes-th one, so it must divide them)."""
        if self.grad_accum == "auto":
            n = self.batch_size if device.type == "cpu" else processes
        else:
            n = self.grad_accum
        if n % processes or self.batch_size % n:
            raise ValueError(f"batch size {self.batch_size} in {n} micro-batches cannot be "
                             f"shared by {processes} processes: make grad_accum a multiple of "
                             "the process count that divides the batch size")
        return n


def train_config(**settings: object) -> TrainConfig:
    """A TrainConfig, or a ValueError naming every bad setting at once."""
    try:
        return TrainConfig.model_validate(settings)
    except ValidationError as e:
        raise ValueError(f"training settings: {every_error(e)}") from None
