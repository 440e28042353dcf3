"""The epoch loop shared by the training stages: optimiser, learning-rate
schedule, EMA, mixed precision, validation, checkpoints, loss curves and
resuming.

A stage hands :func:`run_stage` a :class:`StageTask`: the network to
train, its training and validation pairs, and a loss function. Everything
else (and every file in the stage folder) is handled here, identically
for every stage.
"""

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffpy_cbldm.training.checkpoint import (
    EMA,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from diffpy_cbldm.training.config import config_differences
from diffpy_cbldm.training.curves import write_curves
from diffpy_cbldm.training.data import epoch_batches, validation_batches

__all__ = [
    "BEST",
    "LAST",
    "StageTask",
    "WarmupCosine",
    "check_resume",
    "make_optimizer",
    "run_stage",
]

logger = logging.getLogger(__name__)

LAST = "last.pt"
BEST = "best.pt"
CURVES_CSV = "losses.csv"
CURVES_PNG = "losses.png"
# Under torchrun the processes agree every this many steps whether the
# time for a mid-epoch checkpoint has come.
_SYNC_EVERY = 25
# Least seconds between two drawings of losses.png within a stage.
_PLOT_EVERY = 60.0
# spawn_key purposes of the seeds derived from a stage's seed.
_NOISE_KEY, _VALIDATION_KEY = 11, 12


@dataclass
class StageTask:
    """What one stage trains and how its loss is computed.

    Attributes
    ----------
    name : str
        The stage: "condition", "structure", "diffusion" or
        "estimator".
    net : torch.nn.Module
        The network being trained (on the run's device).
    train_data, val_data : diffpy_cbldm.training.data.PairDataset
    loss : callable
        ``loss(net, batch, kl_weight) -> dict`` of scalar tensors; key
        "loss" is minimised, the others are logged. `batch` is a collated
        dict of tensors on the device.
    kl_weight : float or None
        The full KL weight of a VAE stage (warmed up by
        :meth:`VAETrainConfig.kl_weight`); None for the denoiser and
        the cluster estimator.
    """

    name: str
    net: object
    train_data: object
    val_data: object
    loss: object
    kl_weight: float | None = None


class WarmupCosine:
    """Learning-rate factor: linear warm-up, then cosine decay.

    ``f(k) = (k + 1) / warmup`` for the first `warmup` steps, then
    ``min_ratio + (1 - min_ratio) (1 + cos(pi p)) / 2`` with ``p`` going
    from 0 to 1 over the remaining steps.
    """

    def __init__(self, total_steps, warmup_steps, min_ratio):
        self.total_steps = int(total_steps)
        self.warmup_steps = int(min(warmup_steps, max(total_steps - 1, 0)))
        self.min_ratio = float(min_ratio)

    def __call__(self, step):
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_ratio + (1.0 - self.min_ratio) * cosine


def make_optimizer(cfg, params):
    """The optimiser named in a :class:`TrainConfig`.

    Raises
    ------
    ImportError
        For "adan" when the ``adan-pytorch`` package is not installed.
    """
    import torch

    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(
            params, lr=cfg.lr, weight_decay=cfg.weight_decay
        )
    try:
        from adan_pytorch import Adan
    except ImportError:
        raise ImportError(
            "optimizer 'adan' needs the adan-pytorch package: pip install "
            "adan-pytorch (or choose optimizer 'adamw')"
        ) from None
    return Adan(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _objective(task):
    """The loss as a module's forward, so that DDP synchronises it."""
    import torch

    class Objective(torch.nn.Module):
        def __init__(self, net, loss):
            super().__init__()
            self.net = net
            self.loss_fn = loss

        def forward(self, batch, kl_weight):
            return self.loss_fn(self.net, batch, kl_weight)

    return Objective(task.net, task.loss)


def _seed_everything(seed, *key):
    """Seed torch, numpy and Python from (seed, key)."""
    import random

    import torch

    words = np.random.SeedSequence(seed, spawn_key=key).generate_state(3)
    torch.manual_seed(int(words[0]))
    np.random.seed(int(words[1]))
    random.seed(int(words[2]))


def _loader(dataset, batches, num_workers):
    """A DataLoader over fixed batches of pair codes.

    It gets a generator of its own: a DataLoader otherwise draws its
    workers' base seed from the global torch stream, once per iterator,
    and a resumed epoch (one more iterator) would shift that stream.
    """
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=torch.utils.data.default_collate,
        generator=torch.Generator().manual_seed(0),
    )


def _to(batch, device):
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _autocast(cfg, device):
    import torch

    return torch.autocast(
        device_type=device.type,
        dtype=torch.bfloat16,
        enabled=cfg.precision == "bf16",
    )


def _kl_weight(task, cfg, step, steps_per_epoch):
    """The KL weight of a VAE stage at `step` (None for the denoiser)."""
    if task.kl_weight is None:
        return None
    return cfg.kl_weight(task.kl_weight, step, steps_per_epoch)


def _validate(task, module, cfg, ctx):
    """Mean loss terms of `module` over every validation pair.

    The training noise (VAE sampling, diffusion time and noise) is drawn
    from a fixed seed in a forked random state, so validation neither
    depends on nor disturbs the training stream.
    """
    import torch

    batches = validation_batches(
        len(task.val_data), cfg.batch_size, ctx.rank, ctx.world_size
    )
    names, sums, count = None, None, 0
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    module.eval()
    seed = np.random.SeedSequence(
        cfg.seed, spawn_key=(_VALIDATION_KEY, ctx.rank)
    ).generate_state(1)[0]
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(int(seed))
        for batch in _loader(task.val_data, batches, 0):
            batch = _to(batch, ctx.device)
            n = len(next(iter(batch.values())))
            with _autocast(cfg, ctx.device):
                terms = task.loss(module, batch, task.kl_weight)
            if names is None:
                names = sorted(terms)
                sums = np.zeros(len(names))
            sums += n * np.array([float(terms[k]) for k in names])
            count += n
    totals = ctx.sum(torch.tensor(np.append(sums, count), dtype=torch.float64))
    totals = totals.numpy()
    return {
        f"val_{k}": float(v) for k, v in zip(names, totals[:-1] / totals[-1])
    }


def check_resume(state, meta, path, keys=("data_sha256", "upstream")):
    """Refuse to resume a checkpoint of another run.

    Parameters
    ----------
    state : dict
        The checkpoint (``last.pt``) to resume.
    meta : dict
        What the run would store: ``config`` (the stage's settings, see
        :func:`~diffpy_cbldm.training.stages.stage_settings`) and the
        entries named in `keys`.
    path : pathlib.Path
        The checkpoint's file, for the message.
    keys : sequence of str
        Which of ``data_sha256`` (the training set's content hash) and
        ``upstream`` (hashes of the previous stages' weights) to compare
        besides the configuration.

    Raises
    ------
    ValueError
        Naming the first of them that differs, or every setting that
        differs.
    """
    import json

    for key in keys:
        if state.get(key) != meta.get(key):
            what = {
                "data_sha256": "training set (content sha256)",
                "upstream": "weights of the previous stage",
            }[key]
            raise ValueError(
                f"cannot resume {path}: it was trained with another "
                f"{what} ({state.get(key)!r}, now {meta.get(key)!r}); use "
                "a new output folder or resume=False (--no-resume)"
            )
    old = json.loads(json.dumps(state.get("config")))
    new = json.loads(json.dumps(meta["config"]))
    changes = config_differences(old, new)
    if changes:
        raise ValueError(
            f"cannot resume {path}: the configuration differs "
            f"({'; '.join(changes)}); use a new output folder or "
            "resume=False (--no-resume)"
        )


def run_stage(task, cfg, stage_dir, ctx, meta, *, resume=True, progress=True):
    """Train one stage to the end, resuming from ``last.pt`` if present.

    Parameters
    ----------
    task : StageTask
    cfg : TrainConfig
        This stage's settings.
    stage_dir : pathlib.Path
        The stage folder (``last.pt``, ``best.pt``, ``losses.csv``,
        ``losses.png``).
    ctx : diffpy_cbldm.training.distributed.Context
    meta : dict
        ``config`` (the run configuration as a dict), ``data_sha256``
        and ``upstream`` (hashes of the previous stages' weights): stored
        in both checkpoints and compared on resume.
    resume : bool
        Continue from ``last.pt``; False starts the stage afresh and
        replaces its files.
    progress : bool
        Show a tqdm bar (process 0 only).

    Returns
    -------
    dict
        The best epoch: ``epoch`` and its validation terms ``val_*``.
    """
    import torch
    from tqdm.auto import tqdm

    stage_dir = Path(stage_dir)
    if len(task.val_data) < ctx.world_size:
        raise ValueError(
            f"stage {task.name}: {len(task.val_data)} validation pairs "
            f"cannot be shared by {ctx.world_size} processes"
        )
    last_path, best_path = stage_dir / LAST, stage_dir / BEST
    device = ctx.device
    net = task.net
    ema = EMA(net, cfg.ema_decay)
    optimizer = make_optimizer(cfg, net.parameters())
    n_structures = task.train_data.n_structures
    steps_per_epoch = len(
        epoch_batches(
            n_structures,
            task.train_data.n_draws,
            cfg.batch_size,
            cfg.seed,
            0,
            ctx.rank,
            ctx.world_size,
        )
    )
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        WarmupCosine(total_steps, cfg.warmup_steps, cfg.min_lr_ratio),
    )

    epoch, step, step_in_epoch = 0, 0, 0
    history, best, sums, seen = [], None, None, 0
    _seed_everything(cfg.seed, _NOISE_KEY, ctx.rank)
    if resume and last_path.is_file():
        state = load_checkpoint(last_path)
        check_resume(state, meta, last_path)
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        epoch, step = state["epoch"], state["step"]
        step_in_epoch = state["step_in_epoch"]
        history, best = state["history"], state["best"]
        if state["world_size"] == ctx.world_size:
            restore_rng(state["rng"][ctx.rank], device)
            sums, seen = state["epoch_sums"][ctx.rank]
        else:
            logger.warning(
                "%s was written by %d processes, this run has %d: the "
                "training noise is reseeded and an unfinished epoch "
                "starts over, so the result will differ from an "
                "uninterrupted run",
                last_path,
                state["world_size"],
                ctx.world_size,
            )
            _seed_everything(cfg.seed, _NOISE_KEY, ctx.rank, step)
            step_in_epoch = 0
        logger.info(
            "stage %s: resuming %s at epoch %d, step %d",
            task.name,
            last_path,
            epoch,
            step,
        )
    elif ctx.is_main:
        for name in (LAST, BEST, CURVES_CSV, CURVES_PNG):
            (stage_dir / name).unlink(missing_ok=True)
    ctx.barrier()
    if epoch >= cfg.epochs:
        logger.info("stage %s already finished (%d epochs)", task.name, epoch)
        return best

    model = _objective(task)
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=ids)

    def save(step_in_epoch):
        rngs = ctx.gather_objects(capture_rng(device))
        partial = ctx.gather_objects((sums, seen))
        if ctx.is_main:
            save_checkpoint(
                last_path,
                dict(
                    meta,
                    stage=task.name,
                    epoch=epoch,
                    step=step,
                    step_in_epoch=step_in_epoch,
                    model=net.state_dict(),
                    ema=ema.state_dict(),
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(),
                    rng=rngs,
                    history=history,
                    best=best,
                    epoch_sums=partial,
                    world_size=ctx.world_size,
                ),
            )
        ctx.barrier()

    last_save = time.monotonic()
    last_plot = -math.inf
    while epoch < cfg.epochs:
        batches = epoch_batches(
            n_structures,
            task.train_data.n_draws,
            cfg.batch_size,
            cfg.seed,
            epoch,
            ctx.rank,
            ctx.world_size,
        )
        started, seen_now = time.perf_counter(), 0
        bar = tqdm(
            total=len(batches),
            initial=step_in_epoch,
            desc=f"{task.name} {epoch + 1}/{cfg.epochs}",
            unit="batch",
            disable=not (progress and ctx.is_main),
            leave=False,
        )
        model.train()
        for batch in _loader(
            task.train_data, batches[step_in_epoch:], cfg.num_workers
        ):
            batch = _to(batch, device)
            n = len(next(iter(batch.values())))
            kl_weight = _kl_weight(task, cfg, step, steps_per_epoch)
            with _autocast(cfg, device):
                terms = model(batch, kl_weight)
            values = {k: float(v.detach()) for k, v in terms.items()}
            if not math.isfinite(values["loss"]):
                raise FloatingPointError(
                    f"stage {task.name}: loss {values['loss']} at epoch "
                    f"{epoch + 1}, step {step + 1}; lower the learning "
                    "rate or train in fp32"
                )
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            ema.update(net)
            if sums is None:
                sums = dict.fromkeys(values, 0.0)
            for k, v in values.items():
                sums[k] += n * v
            seen += n
            seen_now += n
            step += 1
            step_in_epoch += 1
            bar.update()
            bar.set_postfix(loss=f"{values['loss']:.4g}")
            if _due(ctx, cfg, last_save, step_in_epoch, len(batches)):
                save(step_in_epoch)
                last_save = time.monotonic()
        bar.close()
        elapsed = time.perf_counter() - started
        keys = sorted(sums)
        totals = ctx.sum(
            torch.tensor([sums[k] for k in keys] + [seen], dtype=torch.float64)
        ).numpy()
        row = {"epoch": epoch + 1, "step": step}
        row["lr"] = scheduler.get_last_lr()[0]
        if task.kl_weight is not None:
            row["kl_weight"] = _kl_weight(task, cfg, step - 1, steps_per_epoch)
        row.update(
            {
                f"train_{k}": float(v / totals[-1])
                for k, v in zip(keys, totals[:-1])
            }
        )
        started = time.perf_counter()
        row.update(_validate(task, ema.module, cfg, ctx))
        row["samples_per_s"] = ctx.world_size * seen_now / elapsed
        row["seconds_train"] = elapsed
        row["seconds_val"] = time.perf_counter() - started
        history.append(row)
        epoch += 1
        step_in_epoch, sums, seen = 0, None, 0
        logger.info(
            "stage %s epoch %d/%d: train loss %.5g, val loss %.5g",
            task.name,
            epoch,
            cfg.epochs,
            row["train_loss"],
            row["val_loss"],
        )
        if best is None or row["val_loss"] < best["val_loss"]:
            best = {"epoch": epoch}
            best.update({k: v for k, v in row.items() if k.startswith("val_")})
            if ctx.is_main:
                save_checkpoint(
                    best_path,
                    dict(
                        meta,
                        stage=task.name,
                        epoch=epoch,
                        step=step,
                        weights=ema.module.state_dict(),
                        metrics=best,
                    ),
                )
        save(0)
        last_save = time.monotonic()
        if ctx.is_main:
            plot = (
                epoch == cfg.epochs
                or time.monotonic() - last_plot > _PLOT_EVERY
            )
            write_curves(
                history,
                stage_dir / CURVES_CSV,
                stage_dir / CURVES_PNG,
                title=f"CbLDM stage {task.name}",
                plot=plot,
            )
            if plot:
                last_plot = time.monotonic()
    return best


def _due(ctx, cfg, last_save, step_in_epoch, n_batches):
    """Whether to write a mid-epoch checkpoint now (same in all ranks)."""
    if step_in_epoch >= n_batches:
        return False
    if ctx.distributed and step_in_epoch % _SYNC_EVERY:
        return False
    late = time.monotonic() - last_save > 60.0 * cfg.checkpoint_minutes
    if ctx.distributed:
        import torch

        flag = torch.tensor([float(late)], dtype=torch.float64)
        late = bool(ctx.sum(flag)[0] > 0)
    return late
