"""The training loop: AdamW with the method's two learning-rate groups, warm-up and schedule, bf16
autocast on GPU, gradient accumulation and clipping, seeded; resumable training states, the best
checkpoint by val mIoU + oIoU, and the final export in the inference checkpoint format. Runs as one
process or under torchrun (DDP)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from backend.errors import CancelledError, UserError
from backend.model.checkpoint import config_mismatch, read_checkpoint, save_checkpoint
from backend.model.factory import build_model, load_checkpoint, make_predictor, resolve_device
from backend.model.losses import RS2SAM2Loss
from backend.model.network_output import RS2SAM2Output
from backend.model.precision import autocast_for
from backend.model.presets import ModelConfig, get_preset
from backend.weights.resolve import with_cached_weights
from training.augment import AugmentConfig
from training.batches import EpochPlan, MicroBatches
from training.config import METHOD_LOSS, TrainConfig, build_config
from training.data.sample import ReferringDataset
from training.data.specs import DataSpec
from training.distributed import (
    DistributedContext,
    barrier,
    gather_objects,
    init_distributed,
    mean_across_ranks,
    shutdown_distributed,
)
from training.evaluate import EvaluationConfig, EvaluationResult, evaluate
from training.logs import TrainingLogs
from training.progress import RunStatus, StopRequest
from training.recipe import RunData, choose_steps, open_run_data
from training.schedule import lr_multiplier
from training.start import recipe_metadata, resolve_start, resolve_warmup, with_default_start
from training.state import STATE_FILE, Progress, load_state, restore_rng, save_state
from training.weights_blend import blend_state

CONFIG_FILE = "config.json"
BEST_CHECKPOINT = "best.safetensors"
FINAL_CHECKPOINT = "final.safetensors"
DATA_CACHE = "data"
# Settings that may change when a run is resumed; everything else must match the saved run.
RESUME_OVERRIDABLE = (
    "max_steps",
    "epochs",
    "device",
    "num_workers",
    "progress",
    "checkpoint_every",
    "eval_every",
    "log_every",
)


@dataclass
class TrainResult:
    out: Path
    steps: int
    best_checkpoint: Path | None = None
    final_checkpoint: Path | None = None
    best_score: float = float("-inf")
    best_step: int = -1  # 0: no step beat the starting model, which best.safetensors then holds
    val_history: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# checks before anything trains


def check_new_run(out: Path) -> None:
    if (out / CONFIG_FILE).exists() or (out / STATE_FILE).exists():
        raise UserError(
            f"{out} already holds a training run; use --resume to continue it or choose another --out"
        )
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")


def resume_config(out: Path, overrides: dict) -> TrainConfig:
    """The saved config of the run in `out`, with the settings that may change on resume."""
    if not (out / CONFIG_FILE).is_file() or not (out / STATE_FILE).is_file():
        raise UserError(
            f"there is no training run to resume in {out} ({CONFIG_FILE} or {STATE_FILE} is missing)"
        )
    saved = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8"))
    for name, value in METHOD_LOSS.items():
        saved.setdefault(name, value)  # runs from before the loss settings existed used the method's loss
    changes = {}
    for name, value in overrides.items():
        if value is None or name == "out":
            continue
        old = saved.get(name)
        if (list(value) if isinstance(value, tuple) else value) == old:
            continue
        if name not in RESUME_OVERRIDABLE:
            raise UserError(
                f"--{name.replace('_', '-')} differs from the run being resumed in {out}; "
                f"only {', '.join(RESUME_OVERRIDABLE)} may change"
            )
        changes[name] = value
    saved.update(changes, out=str(out))
    saved.pop("stop_after_steps", None)  # a test switch that runs of earlier versions saved
    return build_config({}, saved)


def model_config_for(config: TrainConfig, notes: list[str] | None = None) -> ModelConfig:
    """The architecture to train, read without building it (cheap; errors early). A preset starts from
    the official SAM 2 / CLIP weights when they are in the weights cache (what was found goes to `notes`)."""
    if config.checkpoint is None:
        model_config, found = with_cached_weights(get_preset(config.preset))
        if notes is not None:
            notes.extend(found)
        return model_config
    found, _, _ = read_checkpoint(config.checkpoint)
    if config.preset is not None:
        differences = config_mismatch(get_preset(config.preset), found)
        if differences:
            raise UserError(
                f"the checkpoint {config.checkpoint} was made for preset {found.name!r}, not "
                f"{config.preset!r} ({'; '.join(differences[:2])})"
            )
    return found


def open_train_and_val(
    config: TrainConfig, chip: int, cache: Path
) -> tuple[ReferringDataset, ReferringDataset | None]:
    """The run's training and validation data as its recipe chooses them (training/recipe.py). Without
    --val-data both come from the spatial (or seeded) splits of --data; with it, regions give all their
    features to the side they are on; a small region too small to hold out a val split has none."""
    data = open_run_data(config, chip, cache)
    return data.train, data.val


# ---------------------------------------------------------------------------------------------
# the loop


def _per_sample_loss(
    loss_fn: RS2SAM2Loss, output: RS2SAM2Output, masks: torch.Tensor, ignore: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Mean over samples of each sample's loss: the objective of the reference (batch 1 per GPU), and
    independent of how a batch is split over processes. `ignore`: pixels left out of a sample's loss."""
    terms: dict[str, torch.Tensor] = {}
    batch = masks.shape[0]
    for i in range(batch):
        one = RS2SAM2Output(
            **{name: getattr(output, name)[i : i + 1] for name in output.__dataclass_fields__}
        )
        unknown = None if ignore is None or not ignore[i].any() else ignore[i : i + 1]
        for key, value in loss_fn(one, masks[i : i + 1], unknown).items():
            terms[key] = terms.get(key, 0) + value / batch
    return terms


class Trainer:
    def __init__(self, config: TrainConfig, context: DistributedContext, device: torch.device) -> None:
        self.context, self.device = context, device
        self.status, self.stop = RunStatus(), StopRequest()  # train() gives them the run folder
        self.out = Path(config.out)
        notes: list[str] = []
        config, start_note = with_default_start(config)
        notes += [start_note] if start_note else []
        self.model_config = model_config_for(config, notes)
        # Random initial weights: no RS2-SAM 2 checkpoint and no SAM 2 weights (cached or given).
        self.from_scratch = config.checkpoint is None and self.model_config.sam2_checkpoint is None
        if self.from_scratch:
            notes.append(
                "training from random weights (no SAM 2 weights, no checkpoint): unset loss settings take "
                "the from-scratch defaults (training/README.md)"
            )
        start = resolve_start(config, self.from_scratch)
        self.config = config = start.config
        self.start_recipe = start.recipe
        notes += start.notes
        if context.is_main:
            for note in notes:
                print(note, file=sys.stderr)
        chip = config.chip_size or self.model_config.image_size
        cache = self.out / DATA_CACHE
        for spec in (*config.data, *(config.val_data or ())):
            DataSpec.parse(spec)
        if context.is_main:  # synthetic scenes are written once, by rank 0
            self._open_data(chip, cache)
        barrier(context)
        if not context.is_main:
            self._open_data(chip, cache)
        self.plan = EpochPlan(
            len(self.train_data), config.batch_size, config.grad_accum, context.world_size, config.seed
        )
        self.total_steps, why = choose_steps(config, self.data, self.plan.steps_per_epoch)
        self.data.notes.append(f"steps: {self.total_steps} ({why})")
        if config.warmup_steps is None:
            self.config = config = config.replace(
                warmup_steps=resolve_warmup(config, self.start_recipe, self.total_steps)
            )
        self.start_blend = self.data.start_blend if config.start_blend is None else config.start_blend
        if self.val_data is None and self.start_blend > 0:
            self.data.notes.append(
                f"result: final.safetensors blends {self.start_blend:.0%} of the starting model's weights "
                "into the last step's (no validation to choose a step by; --start-blend)"
            )
        self.eval_every = config.eval_every or self.plan.steps_per_epoch
        self.augment = AugmentConfig(
            geometric_prob=config.geometric_prob,
            rotations=config.rotations,
            black_box_prob=config.black_box_prob,
            photometric_prob=self.data.photometric_prob,
        )
        if context.is_main:
            for line in (*self.data.notes, *self.data.warnings):
                print(line, file=sys.stderr)

    def _open_data(self, chip: int, cache: Path) -> None:
        self.data: RunData = open_run_data(self.config, chip, cache)
        self.train_data, self.val_data = self.data.train, self.data.val

    def build(self, resume: bool) -> Progress:
        cfg = self.config
        torch.manual_seed(cfg.seed)  # identical initialisation on every rank and every run
        if cfg.checkpoint is not None:
            model, _ = load_checkpoint(cfg.checkpoint, device=str(self.device))
            model.train()
        else:
            model = build_model(self.model_config, device=str(self.device))
        if cfg.train_union_encoder:
            model.unfreeze_union_encoder()
        else:
            model.apply_freezing()  # the family's rules (a loaded model keeps the freezing it was made with)
        if cfg.freeze == "encoders":
            model.freeze_encoders()
        # The starting weights, for a blend at the end (on the CPU: a copy that does not take GPU memory)
        self.start_state = None
        if self.start_blend > 0 and self.val_data is None:
            self.start_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.model = model
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            model.param_groups(cfg.lr_new, cfg.lr_rest, cfg.weight_decay), **adamw_kernel(self.device)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lr_multiplier(
                cfg.schedule,
                self.total_steps,
                cfg.warmup_steps,
                self.plan.steps_per_epoch,
                cfg.lr_drop_epochs,
                cfg.lr_drop_factor,
            ),
        )
        self.loss_fn = RS2SAM2Loss(cfg.loss_config(self.from_scratch))
        progress = Progress()
        if resume:
            state = load_state(self.out / STATE_FILE)
            model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            restore_rng(state)
            progress = Progress(**state["progress"])
        self.network = model
        if self.context.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        return progress

    def validate(self, step: int) -> dict:
        """Val metrics, each rank evaluating every world-th sample, gathered on all ranks."""
        cfg = self.config
        count = len(self.val_data) if cfg.val_limit is None else min(cfg.val_limit, len(self.val_data))
        indices = list(range(count))[self.context.rank :: self.context.world_size]
        predictor = make_predictor(self.model, model_id=f"step-{step}")
        try:
            part = evaluate(
                predictor, self.val_data, EvaluationConfig(protocol=cfg.eval_protocol), indices=indices
            )
        finally:
            self.model.train()
        merged = EvaluationResult(
            [s for samples in gather_objects(self.context, part.samples) for s in samples]
        )
        return merged.summary()

    # ---- the loop: one optimizer step = grad_accum micro-batches; then log, validate, save ---------
    def run(self, progress: Progress, logs: TrainingLogs | None) -> TrainResult:
        result = TrainResult(out=self.out, steps=progress.step, best_score=progress.best_score)
        if progress.step == 0 and self.val_data is not None and not self.from_scratch:
            # A trained starting model is the first candidate: a run in which no step beats it keeps it.
            self._validate_and_keep_best(progress, logs, result)
        bar = self._progress_bar(progress)
        self._stop_if_asked(progress)
        window = _Window(time.perf_counter())
        try:
            while progress.step < self.total_steps:
                batches = self.micro_batches(progress.epoch)
                for k, batch in enumerate(self._loader(batches, progress), start=progress.micro_batch):
                    boundary = (k + 1) % self.config.grad_accum == 0
                    terms = self.forward_backward(batch, sync=boundary)
                    window.add(
                        terms,
                        samples=len(batch["phrases"]) * self.context.world_size,
                        parts=self.config.grad_accum,
                    )
                    if not boundary:
                        continue
                    grad_norm = self._optimizer_step()
                    _advance(progress, micro_batches_done=k + 1, micro_batches=len(batches))
                    self._after_step(progress, grad_norm, window, logs, bar, result)
                    if progress.step >= self.total_steps:
                        break
                    self._stop_if_asked(progress)
        finally:
            if bar is not None:
                bar.close()  # also on an error: the bar's line ends before the error is printed
        return self._finish(progress, result)

    def _progress_bar(self, progress: Progress):
        if not (self.context.is_main and self.config.progress):
            return None
        from tqdm import tqdm

        return tqdm(
            total=self.total_steps, initial=progress.step, desc="train", unit="step", dynamic_ncols=True
        )

    def _loader(self, batches: MicroBatches, progress: Progress) -> torch.utils.data.DataLoader:
        """The rest of this epoch's micro-batches (a resumed run skips those already consumed)."""
        return torch.utils.data.DataLoader(
            batches,
            batch_size=None,
            num_workers=self.config.num_workers,
            sampler=list(range(progress.micro_batch, len(batches))),
        )

    def micro_batches(self, epoch: int) -> MicroBatches:
        """This rank's share of every micro-batch of `epoch`, in order."""
        return MicroBatches(
            self.train_data, self.plan, epoch, self.context.rank, self.model_config, self.augment
        )

    def forward_backward(self, batch: dict, sync: bool = True) -> dict[str, torch.Tensor]:
        """Forward and backward of one micro-batch (this rank's share), the loss divided by the
        accumulation steps. Under DDP, `sync` makes this backward average the gradients over the ranks
        (the last micro-batch of a step); returns the loss terms of this rank's samples.

        Public so that tests check the gradients exactly what the loop runs leaves (tests/training)."""
        no_sync = contextlib.nullcontext() if sync or not self.context.enabled else self.network.no_sync()
        with no_sync:
            with autocast_for(self.device):
                output = self.network(
                    batch["sam"].to(self.device), batch["clip"].to(self.device), batch["phrases"]
                )
            ignore = batch.get("ignore")
            terms = _per_sample_loss(
                self.loss_fn,
                output,
                batch["masks"].to(self.device),
                None if ignore is None else ignore.to(self.device),
            )
            (terms["total"] / self.config.grad_accum).backward()
        return terms

    def _optimizer_step(self) -> float | None:
        """Clip, step, schedule; the gradient norm before clipping (None without clipping)."""
        grad_norm = None
        if self.config.clip_grad_norm:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, self.config.clip_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _after_step(
        self, progress: Progress, grad_norm: float | None, window: _Window, logs, bar, result: TrainResult
    ) -> None:
        cfg, step = self.config, progress.step
        last = step == self.total_steps
        window.end_step()
        # the loss: this rank's mean since the last log row (status.json, training/progress.py)
        loss = window.losses.get("total")
        self.status.update(phase="training", step=step, total_steps=self.total_steps, loss=loss)
        if step % cfg.log_every == 0 or last:
            row = self._log_row(progress, grad_norm, window)
            if logs is not None:
                logs.log_train(row)
            if bar is not None:
                bar.set_postfix(loss=f"{row['loss']:.4f}", samples_s=f"{row['samples_per_s']:.1f}")
            window.restart()
        if bar is not None:
            bar.update(1)
        if self.val_data is not None and (step % self.eval_every == 0 or last):
            self._validate_and_keep_best(progress, logs, result)
            window.started = time.perf_counter()  # throughput counts training time only
        if (step % cfg.checkpoint_every == 0 or last) and self.context.is_main:
            save_state(
                self.out / STATE_FILE, self.model, self.optimizer, self.scheduler, progress, cfg.to_json()
            )

    def _log_row(self, progress: Progress, grad_norm: float | None, window: _Window) -> dict:
        """The loss of this step over the whole global batch (every rank takes part)."""
        losses = {
            key: mean_across_ranks(self.context, value, self.device) for key, value in window.losses.items()
        }
        elapsed = time.perf_counter() - window.started
        return {
            "step": progress.step,
            "epoch": progress.epoch,
            "loss": losses.get("total", math.nan),
            **{key: losses.get(key) for key in ("ce", "dice", "tbl", "aux")},
            "lr_new": self.optimizer.param_groups[0]["lr"],
            "lr_rest": self.optimizer.param_groups[-1]["lr"],
            "grad_norm": grad_norm,
            "samples_per_s": window.samples / max(elapsed, 1e-9),
        }

    def _validate_and_keep_best(self, progress: Progress, logs, result: TrainResult) -> None:
        step = progress.step
        self.status.update(phase="validating", step=step, total_steps=self.total_steps)
        summary = self.validate(step)
        self.status.update(phase="training", validation=summary)
        result.val_history.append({"step": step, **summary})
        score = summary["mIoU"] + summary["oIoU"]
        if score > progress.best_score:
            progress.best_score, progress.best_step = score, step
            if self.context.is_main:
                metadata = {
                    "step": step,
                    "epoch": progress.epoch,
                    "val": summary,
                    "data": list(self.config.data),
                    "recipe": self._recipe(),
                }
                if step == 0:
                    metadata["start"] = "the starting model, scored before any step"
                save_checkpoint(self.out / BEST_CHECKPOINT, self.model, overwrite=True, metadata=metadata)
        if logs is not None:
            logs.log_val({"step": step, "epoch": progress.epoch, **summary})

    def _stop_if_asked(self, progress: Progress) -> None:
        """At a step boundary: when asked to stop (training/progress.py), save the resumable state of
        this step and end the run with CancelledError. Not under DDP (the ranks would have to agree)."""
        if self.context.enabled or not self.stop.requested():
            return
        save_state(
            self.out / STATE_FILE, self.model, self.optimizer, self.scheduler, progress, self.config.to_json()
        )
        self.status.update(phase="stopped", step=progress.step, total_steps=self.total_steps)
        raise CancelledError(f"stopped at step {progress.step} of {self.total_steps}; continue with --resume")

    def _recipe(self) -> dict:
        chip = self.config.chip_size or self.model_config.image_size
        return recipe_metadata(self.config, self.model_config.image_size, chip, self.total_steps)

    def _finish(self, progress: Progress, result: TrainResult) -> TrainResult:
        result.steps, result.best_score = progress.step, progress.best_score
        self.status.update(phase="saving", step=progress.step)
        result.best_step = progress.best_step
        if self.context.is_main:
            metadata = {"step": progress.step, "data": list(self.config.data), "recipe": self._recipe()}
            if self.start_state is not None:
                blended = blend_state(self.start_state, self.model.state_dict(), 1 - self.start_blend)
                self.model.load_state_dict(blended)
                metadata["start_blend"] = self.start_blend
            result.final_checkpoint = save_checkpoint(
                self.out / FINAL_CHECKPOINT, self.model, overwrite=True, metadata=metadata
            )
        if (self.out / BEST_CHECKPOINT).exists():
            result.best_checkpoint = self.out / BEST_CHECKPOINT
            if progress.best_step == 0 and self.context.is_main:
                print(
                    "no step beat the starting model on validation: best.safetensors is the starting model",
                    file=sys.stderr,
                )
        barrier(self.context)
        return result


def adamw_kernel(device: torch.device) -> dict[str, bool]:
    """AdamW's fused kernel where torch has one (CPU and CUDA: one pass over each tensor; on the CPU
    measured 5.8 ms a step against 25 ms for foreach, which torch runs there as a loop of small ops, on the
    `test` preset's 394 tensors), else foreach (torch only defaults to it on GPUs)."""
    return {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}


@dataclass
class _Window:
    """What happened since the last log row: its start, samples seen, and the loss terms summed over its
    steps — a row logs their mean, so a row reads as the loss of its window, not of one noisy batch."""

    started: float
    samples: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0

    def add(self, terms: dict[str, torch.Tensor], samples: int, parts: int) -> None:
        """One micro-batch: its loss terms (a 1/parts share of the step) and the samples all ranks saw."""
        for key, value in terms.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value.detach()) / parts
        self.samples += samples

    def end_step(self) -> None:
        self.steps += 1

    @property
    def losses(self) -> dict[str, float]:
        return {key: value / max(self.steps, 1) for key, value in self.sums.items()}

    def restart(self) -> None:
        self.started, self.samples, self.sums, self.steps = time.perf_counter(), 0, {}, 0


def _advance(progress: Progress, micro_batches_done: int, micro_batches: int) -> None:
    progress.step += 1
    progress.micro_batch = micro_batches_done
    if progress.micro_batch == micro_batches:
        progress.epoch, progress.micro_batch = progress.epoch + 1, 0


def resolve_named_model(config: TrainConfig) -> TrainConfig:
    """`--model NAME` → the checkpoint (or preset) it names, so the run records where it started."""
    if config.model is None:
        return config
    from backend.weights.models import model_status

    status = model_status(config.model)
    if not status.available:
        raise UserError(f"the model {config.model} is not in the cache; get it with: {status.how_to_get}")
    if status.path is None:
        return config.replace(model=None, preset=config.model)
    return config.replace(model=None, checkpoint=str(status.path))


def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Run (or resume, with the config from `resume_config`) a training run; everything that can be
    wrong with the input is reported before the first step."""
    config = resolve_named_model(config)
    if resume:
        load_state(Path(config.out) / STATE_FILE)  # readable before anything else happens
        StopRequest(Path(config.out)).clear()  # the request that stopped it is answered
        for leftover in Path(config.out).glob(".*.part"):  # temp files of a write the kill interrupted
            leftover.unlink(missing_ok=True)
    else:
        check_new_run(Path(config.out))
    device = resolve_device(config.device)
    context = init_distributed(device.type)
    try:
        if context.enabled and device.type == "cuda":
            device = torch.device("cuda", context.local_rank)
            torch.cuda.set_device(device)
        out = Path(config.out)
        if context.is_main:
            out.mkdir(parents=True, exist_ok=True)
        barrier(context)
        status = RunStatus(out if context.is_main else None)
        status.update(phase="preparing", step=0, total_steps=0)
        trainer = Trainer(config, context, device)
        trainer.status, trainer.stop = status, StopRequest(out)
        progress = trainer.build(resume)
        logs = None
        if context.is_main:
            fd_path = out / CONFIG_FILE
            tmp = out / f".{CONFIG_FILE}.part"
            tmp.write_text(trainer.config.to_json(), encoding="utf-8")  # every setting resolved
            os.replace(tmp, fd_path)
            logs = TrainingLogs(out, resume_step=progress.step if resume else None)
        try:
            result = trainer.run(progress, logs)
            status.update(phase="done", step=result.steps, best_step=result.best_step)
            return result
        finally:
            if logs is not None:
                logs.close()
    finally:
        shutdown_distributed(context)
