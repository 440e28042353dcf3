"""Configuration of a CbLDM training run: one frozen dataclass per stage.

A run (:class:`RunConfig`) holds the network configuration
(:class:`diffpy_cbldm.model.CbLDMConfig`), the training set split and one
:class:`TrainConfig` per stage. It is written as ``config.json`` into the
output folder and inside every checkpoint, and a resumed run must match
it exactly.
"""

import dataclasses
import math
from dataclasses import dataclass, field, fields

__all__ = [
    "OPTIMIZERS",
    "PRECISIONS",
    "LATENT_TARGETS",
    "SPLIT_SCHEMES",
    "STAGES",
    "DiffusionTrainConfig",
    "RunConfig",
    "TrainConfig",
    "VAETrainConfig",
    "config_differences",
]

STAGES = ("condition", "structure", "diffusion", "estimator")
"""The four training stages in the order they run: Alg. 1-3 of the paper
and the cluster estimator."""

OPTIMIZERS = ("adamw", "adan")
PRECISIONS = ("auto", "fp32", "bf16")
LATENT_TARGETS = ("posterior_sample", "posterior_mean")
SPLIT_SCHEMES = ("shape", "random")


def _check(condition, name, value, requirement):
    if not condition:
        raise ValueError(f"training setting {name}={value!r}: {requirement}")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training stage.

    Attributes
    ----------
    epochs : int
        Passes over the training structures. Each epoch visits every
        training structure once, with one of its stored PDFs drawn at
        random (a fresh draw each epoch).
    batch_size : int
        Structures per optimiser step and process (the global batch under
        ``torchrun`` is ``batch_size * world_size``).
    lr : float
        Peak learning rate.
    weight_decay : float
        Decoupled weight decay (AdamW, Adan).
    optimizer : {"adamw", "adan"}
        ``torch.optim.AdamW``, or Adan (Xie et al.) from the optional
        ``adan-pytorch`` package, as the paper used for the two VAEs.
    warmup_steps : int
        Linear learning-rate warm-up from 0, in optimiser steps.
    min_lr_ratio : float
        The cosine decay ends at ``min_lr_ratio * lr`` after the last
        step.
    ema_decay : float
        Decay of the exponential moving average of the weights; the EMA
        weights are validated, kept as "best" and exported.
    precision : {"auto", "fp32", "bf16"}
        "bf16" runs forward and loss under bfloat16 autocast (weights
        and optimiser stay float32). "auto" is decided when training
        starts (:func:`~diffpy_cbldm.training.distributed.
        native_bfloat16`): "bf16" where the device computes in bfloat16
        natively (a GPU that supports it; a CPU with ``avx512_bf16`` or
        ``amx_bf16``), "fp32" elsewhere, where autocast only converts
        and is slower; the run's ``config.json`` and checkpoints record
        the choice.
    grad_clip : float or None
        Largest global gradient norm; None disables clipping.
    seed : int
        Seed of the initial weights, the data order, the PDF draws and
        the training noise.
    num_workers : int
        ``torch.utils.data.DataLoader`` worker processes assembling
        batches; 0 assembles them in the training process.
    checkpoint_minutes : float
        Besides the checkpoint after each epoch, write one whenever this
        many minutes have passed within an epoch.
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    optimizer: str = "adamw"
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    ema_decay: float = 0.999
    precision: str = "auto"
    grad_clip: float | None = 1.0
    seed: int = 42
    num_workers: int = 0
    checkpoint_minutes: float = 10.0

    def __post_init__(self):
        _check(
            _is_int(self.epochs) and self.epochs >= 1,
            "epochs",
            self.epochs,
            "must be an integer >= 1",
        )
        _check(
            _is_int(self.batch_size) and self.batch_size >= 1,
            "batch_size",
            self.batch_size,
            "must be an integer >= 1",
        )
        _check(_positive(self.lr), "lr", self.lr, "must be a positive number")
        _check(
            _finite(self.weight_decay) and self.weight_decay >= 0,
            "weight_decay",
            self.weight_decay,
            "must be >= 0",
        )
        _check(
            self.optimizer in OPTIMIZERS,
            "optimizer",
            self.optimizer,
            f"must be one of {OPTIMIZERS}",
        )
        _check(
            _is_int(self.warmup_steps) and self.warmup_steps >= 0,
            "warmup_steps",
            self.warmup_steps,
            "must be an integer >= 0",
        )
        _check(
            _finite(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1,
            "min_lr_ratio",
            self.min_lr_ratio,
            "must lie in [0, 1]",
        )
        _check(
            _finite(self.ema_decay) and 0 <= self.ema_decay < 1,
            "ema_decay",
            self.ema_decay,
            "must lie in [0, 1)",
        )
        _check(
            self.precision in PRECISIONS,
            "precision",
            self.precision,
            f"must be one of {PRECISIONS}",
        )
        _check(
            self.grad_clip is None or _positive(self.grad_clip),
            "grad_clip",
            self.grad_clip,
            "must be positive or None",
        )
        _check(
            _is_int(self.seed) and self.seed >= 0,
            "seed",
            self.seed,
            "must be an integer >= 0",
        )
        _check(
            _is_int(self.num_workers) and self.num_workers >= 0,
            "num_workers",
            self.num_workers,
            "must be an integer >= 0",
        )
        _check(
            _positive(self.checkpoint_minutes),
            "checkpoint_minutes",
            self.checkpoint_minutes,
            "must be a positive number",
        )

    def replace(self, **changes):
        """A copy with `changes` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        return cls(**_known_fields(cls, values))


@dataclass(frozen=True)
class VAETrainConfig(TrainConfig):
    """A VAE stage (Alg. 1 and 2): :class:`TrainConfig` plus a warm-up of
    the KL term.

    The weight of ``KL`` in ``loss = rec + weight * kl`` is the network's
    own (``kl_weight`` of its configuration in
    :class:`diffpy_cbldm.model.CbLDMConfig`); only its warm-up is a
    training setting.

    Attributes
    ----------
    kl_warmup_epochs : float
        The KL weight rises linearly from 0 to the network's
        ``kl_weight`` over this many epochs (per optimiser step); 0 uses
        the full weight from the start. Validation always uses the full
        weight, so that validation losses of different epochs compare.
    """

    kl_warmup_epochs: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        _check(
            _finite(self.kl_warmup_epochs) and self.kl_warmup_epochs >= 0,
            "kl_warmup_epochs",
            self.kl_warmup_epochs,
            "must be >= 0",
        )

    def kl_weight(self, full_weight, step, steps_per_epoch):
        """KL weight at optimiser step `step` (0-based)."""
        if self.kl_warmup_epochs == 0:
            return full_weight
        ramp = self.kl_warmup_epochs * steps_per_epoch
        return full_weight * min(1.0, (step + 1) / ramp)


@dataclass(frozen=True)
class DiffusionTrainConfig(TrainConfig):
    """The denoiser stage (Alg. 3).

    Attributes
    ----------
    latent : {"posterior_sample", "posterior_mean"}
        What the denoiser learns to generate. The training Laplacians are
        encoded once by the frozen structure VAE to their posterior
        ``N(mu, exp(logvar))``; "posterior_sample" draws a fresh
        ``z0 = mu + exp(logvar / 2) * eps`` at every step (Alg. 3, ``z0 ~
        q(z | x, c0)``), "posterior_mean" uses ``mu``.
    fit_latent_scale : bool
        Measure ``latent_scale = 1 / std(z0)`` over the training latents
        (as in Rombach et al.) and export it in the model configuration;
        False keeps the configuration's ``latent_scale``.
    """

    latent: str = "posterior_sample"
    fit_latent_scale: bool = True

    def __post_init__(self):
        super().__post_init__()
        _check(
            self.latent in LATENT_TARGETS,
            "latent",
            self.latent,
            f"must be one of {LATENT_TARGETS}",
        )
        _check(
            isinstance(self.fit_latent_scale, bool),
            "fit_latent_scale",
            self.fit_latent_scale,
            "must be True or False",
        )


def _positive(value):
    return _finite(value) and value > 0


def _finite(value):
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _known_fields(cls, values):
    if not isinstance(values, dict):
        raise ValueError(
            f"{cls.__name__} needs a dict of settings, got {type(values)}"
        )
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} settings {unknown}; known: "
            f"{sorted(names)}"
        )
    return dict(values)


def _default_model():
    from diffpy_cbldm.model import CbLDMConfig

    return CbLDMConfig()


@dataclass(frozen=True)
class RunConfig:
    """Everything a CbLDM training run depends on.

    Attributes
    ----------
    model : diffpy_cbldm.model.CbLDMConfig
        The networks, the diffusion schedule and the conventions (r-grid,
        PDF normalisation, Laplacian sigma), which must match the
        training set's.
    condition, structure : VAETrainConfig
        Stage 1 (condition VAE on PDFs, Alg. 1) and stage 2 (structure VAE
        on Laplacians, Alg. 2).
    diffusion : DiffusionTrainConfig
        Stage 3 (latent denoiser, Alg. 3).
    estimator : TrainConfig
        Stage 4, the cluster estimator (PDF -> atom count and structure
        type); it needs only the training set, not the other stages.
    split : {"shape", "random"}
        Which split of the training set to use: "shape" (the set's
        train/val/test split by cluster shape) or "random" (the paper's
        random 95/5 split). Training uses "train", validation "val".
    """

    model: object = field(default_factory=_default_model)
    condition: VAETrainConfig = field(
        default_factory=lambda: VAETrainConfig(
            epochs=10, lr=1e-3, kl_warmup_epochs=2.0
        )
    )
    structure: VAETrainConfig = field(
        default_factory=lambda: VAETrainConfig(
            epochs=12, lr=1e-3, kl_warmup_epochs=1.0
        )
    )
    diffusion: DiffusionTrainConfig = field(
        default_factory=lambda: DiffusionTrainConfig(epochs=12, lr=5e-4)
    )
    estimator: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=40, batch_size=64, lr=1e-3, weight_decay=1e-4
        )
    )
    split: str = "shape"

    def __post_init__(self):
        _check(
            self.split in SPLIT_SCHEMES,
            "split",
            self.split,
            f"must be one of {SPLIT_SCHEMES}",
        )
        for stage, cls in _STAGE_CLASSES.items():
            value = getattr(self, stage)
            _check(
                isinstance(value, cls),
                stage,
                value,
                f"must be a {cls.__name__}",
            )

    def stage(self, name):
        """The :class:`TrainConfig` of stage `name`."""
        if name not in STAGES:
            raise ValueError(
                f"unknown training stage {name!r}; choose from {STAGES}"
            )
        return getattr(self, name)

    def replace(self, **changes):
        """A copy with `changes` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def with_stage_settings(self, stages=STAGES, **changes):
        """A copy whose stages `stages` get the settings `changes`.

        Used by the command line: ``--epochs 5`` sets the epochs of every
        stage it trains.
        """
        if not changes:
            return self
        return self.replace(
            **{s: self.stage(s).replace(**changes) for s in stages}
        )

    def to_dict(self):
        """JSON-ready nested dict."""
        out = {"model": self.model.to_dict(), "split": self.split}
        for stage in STAGES:
            out[stage] = getattr(self, stage).to_dict()
        return out

    @classmethod
    def from_dict(cls, values):
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        from diffpy_cbldm.model import CbLDMConfig

        values = _known_fields(cls, values)
        kwargs = {}
        if "model" in values:
            kwargs["model"] = CbLDMConfig.from_dict(values["model"])
        if "split" in values:
            kwargs["split"] = values["split"]
        for stage, stage_cls in _STAGE_CLASSES.items():
            if stage in values:
                kwargs[stage] = stage_cls.from_dict(values[stage])
        return cls(**kwargs)


_STAGE_CLASSES = {
    "condition": VAETrainConfig,
    "structure": VAETrainConfig,
    "diffusion": DiffusionTrainConfig,
    "estimator": TrainConfig,
}


def config_differences(old, new, prefix=""):
    """Dotted names of the settings that differ between two nested dicts.

    Parameters
    ----------
    old, new : dict
        Two ``to_dict()`` results.

    Returns
    -------
    list of str
        e.g. ``["condition.epochs: 40 -> 5"]``.
    """
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, prefix=f"{name}.")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out
