"""The CbLDM training stages (paper, section 3.2, Alg. 1-3, and the
cluster estimator) and :func:`train`, which runs them.

Output folder layout::

    OUT/config.json          the run configuration (RunConfig)
    OUT/condition/           stage 1: last.pt, best.pt, losses.csv/.png
    OUT/structure/           stage 2: the same
    OUT/diffusion/           stage 3: the same, and latents.pt
    OUT/estimator/           stage 4: the same
    OUT/weights/             the exported weights (after stage 3 or 4)

Stage 1 trains the condition VAE on normalised PDFs. Stage 2 trains the
structure VAE on Laplacians, computed on the fly from the stored
coordinates, with the latent condition ``z_c`` (the posterior mean) of
the frozen stage-1 EMA weights. Stage 3 encodes every training pair once
with the frozen stage-2 EMA encoder to its posterior ``N(mu, var)``
(cached in ``latents.pt``) and trains the denoiser on ``latent_scale *
z0`` with ``z0`` drawn from that posterior at every step. Stage 4 trains
the cluster estimator on normalised PDFs, atom counts and structure
types; it depends on no other stage. The weights are exported once
stages 1-3 are done, with the cluster estimator when stage 4 is done
too. A run of stage 4 alone can instead be exported onto an existing
weights set (``base_weights``): a copy of that set whose networks of
stages 1-3 are unchanged and whose cluster estimator is this run's.
"""

import json
import logging
import math
from pathlib import Path

from diffpy_cbldm.atomic import atomic_path
from diffpy_cbldm.training.checkpoint import (
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)
from diffpy_cbldm.training.config import STAGES, RunConfig, config_differences
from diffpy_cbldm.training.data import (
    PairDataset,
    laplacian_batch,
    load_split,
    median_nn_peak,
    site_targets,
    structure_type_codes,
    training_templates,
)
from diffpy_cbldm.training.loop import (
    BEST,
    LAST,
    StageTask,
    check_resume,
    run_stage,
)

__all__ = [
    "CONFIG_FILE",
    "TRAIN_STAGES",
    "WEIGHTS_DIR",
    "default_config",
    "stage_settings",
    "train",
]

logger = logging.getLogger(__name__)

TRAIN_STAGES = STAGES + ("all",)
"""Values of ``stage`` accepted by :func:`train`."""

CONFIG_FILE = "config.json"
WEIGHTS_DIR = "weights"
LATENTS_FILE = "latents.pt"

# The parts of the model configuration each stage's own network is built
# from; a stage depends on these, its upstream stages' and the
# conventions (_model_parts).
_OWN_PARTS = {
    "condition": ("condition",),
    "structure": ("structure",),
    "diffusion": (
        "denoiser",
        "num_train_timesteps",
        "beta_schedule",
        "latent_scale",
    ),
    "estimator": ("estimator",),
}
# The stages whose best weights a stage is trained on (its "upstream").
_UPSTREAM = {
    "condition": (),
    "structure": ("condition",),
    "diffusion": ("condition", "structure"),
    "estimator": (),
}
_NETWORK = {
    "condition": "condition_vae",
    "structure": "structure_vae",
    "diffusion": "denoiser",
    "estimator": "cluster_estimator",
}
# The networks every exported set holds; the cluster estimator is added
# when its stage is done.
_EXPORTED = ("condition", "structure", "diffusion")
# Metrics of a weights set measured on the whole pipeline with its
# cluster estimator; a set exported onto it with another estimator
# drops them until they are measured again.
PIPELINE_METRICS = ("test_evaluation", "estimator_quality_val")
# Batch of the frozen networks when they encode the whole set.
_ENCODE_BATCH = 256
# spawn_key purpose of the initial weights of each stage's network.
_INIT_KEY = 10


def stage_settings(config, stage):
    """The part of a run configuration that one stage depends on.

    A checkpoint stores it; resuming compares it, so that settings of
    later stages can change without invalidating earlier ones.

    Parameters
    ----------
    config : RunConfig
    stage : str

    Returns
    -------
    dict
        JSON-ready: ``split``, this stage's settings and the relevant
        parts of the model configuration.
    """
    full = json.loads(json.dumps(config.to_dict()))
    model = {k: full["model"][k] for k in _model_parts(stage)}
    return {"split": full["split"], stage: full[stage], "model": model}


def _model_parts(stage):
    """The parts of the model configuration `stage` depends on: the
    conventions, its upstream stages' own parts and its own."""
    parts = ["conventions"]
    for name in _UPSTREAM[stage] + (stage,):
        parts += _OWN_PARTS[name]
    return parts


def _conventions_from_manifest(manifest):
    """The model's default conventions on a training set's grid, with its
    Laplacian sigma, size and atom ordering rule."""
    import dataclasses

    from diffpy_cbldm.conventions import Conventions

    grid = manifest["rgrid"]
    pdf_field = next(
        f for f in dataclasses.fields(Conventions) if f.name == "pdf"
    )
    pdf = pdf_field.default_factory().replace(
        rmin=grid["rmin"], rmax=grid["rmax"], rstep=grid["rstep"]
    )
    return Conventions(
        pdf=pdf,
        sigma=float(manifest["laplacian"]["sigma"]),
        ordering_rule=str(manifest["ordering_rule"]),
        max_atoms=int(manifest["laplacian"]["size"]),
    )


def _check_conventions(conventions, dataset):
    """The model's conventions must be those the training set was built
    with; raise ValueError naming the first that differs."""
    m = dataset.manifest
    grid = m["rgrid"]
    r = conventions.rgrid
    checks = (
        ("r-grid points", conventions.n_points, int(grid["npoints"])),
        ("r-grid start (Å)", float(r[0]), float(dataset.rgrid[0])),
        ("r-grid step (Å)", conventions.pdf.rstep, float(grid["rstep"])),
        ("Laplacian sigma (Å)", conventions.sigma, m["laplacian"]["sigma"]),
        ("Laplacian size", conventions.max_atoms, m["laplacian"]["size"]),
        ("atom ordering rule", conventions.ordering_rule, m["ordering_rule"]),
    )
    for what, model_value, data_value in checks:
        same = (
            math.isclose(model_value, data_value, rel_tol=1e-9)
            if isinstance(model_value, float)
            else model_value == data_value
        )
        if not same:
            raise ValueError(
                f"the model's conventions do not match training set "
                f"{dataset.path}: {what} is {model_value!r} in the model "
                f"configuration but {data_value!r} in the training set"
            )


def default_config(data):
    """The default run configuration for a training set.

    The networks and stage settings are the package defaults; the
    conventions (r-grid, Laplacian sigma and size, atom ordering rule)
    are the training set's.

    Parameters
    ----------
    data : path-like
        A training set (``cbldm dataset build``).

    Returns
    -------
    RunConfig
    """
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.model import CbLDMConfig, StructureVAEConfig

    with open_dataset(data) as ds:
        conventions = _conventions_from_manifest(ds.manifest)
        templates = training_templates(ds, RunConfig().split)
    structure = StructureVAEConfig(
        size=conventions.max_atoms,
        sigma=conventions.sigma,
        count_prior=True,
        decoder="template",
        template_sites=tuple(len(t) for t in templates),
    )
    return RunConfig(
        model=CbLDMConfig(conventions=conventions, structure=structure)
    )


def _resolve_config(config, out_dir, data):
    """The configuration to train with: `config`, else OUT/config.json,
    else the defaults for the training set."""
    path = out_dir / CONFIG_FILE
    if config is None:
        if path.is_file():
            try:
                config = RunConfig.from_dict(json.loads(path.read_text()))
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
        else:
            config = default_config(data)
    elif not isinstance(config, RunConfig):
        raise ValueError(
            f"config must be a RunConfig or None, got {type(config).__name__}"
        )
    return config


def _decide_precision(config, device):
    """`config` with each stage's precision "auto" replaced by "bf16" or
    "fp32" for `device` (:func:`~diffpy_cbldm.training.distributed.
    native_bfloat16`), so that config.json and the checkpoints name the
    precision trained in and a resume elsewhere keeps it."""
    from diffpy_cbldm.training import distributed

    auto = [s for s in STAGES if config.stage(s).precision == "auto"]
    if not auto:
        return config
    chosen = "bf16" if distributed.native_bfloat16(device) else "fp32"
    logger.info(
        "precision auto: %s on this %s (stages %s)",
        chosen,
        device.type,
        ", ".join(auto),
    )
    for stage in auto:
        config = config.with_stage_settings((stage,), precision=chosen)
    return config


def _write_config(config, out_dir):
    """Create `out_dir` and write the configuration to OUT/config.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(config.to_dict(), indent=2) + "\n")


def _check_resumable(stages, out_dir, config, data_hash):
    """Refuse, before any file is written, a run that the epoch loop would
    refuse to resume.

    Each stage of `stages` with a ``last.pt`` is compared with it as
    :func:`~diffpy_cbldm.training.loop.run_stage` compares it (with
    :func:`~diffpy_cbldm.training.loop.check_resume`): its settings and
    the training set, and the weights of the previous stages where they
    are known now (a previous stage that this run does not train, or
    that it finds finished). The loop still compares everything.

    Parameters
    ----------
    stages : sequence of str
        The stages this run trains, in order.
    out_dir : pathlib.Path
    config : RunConfig
    data_hash : str
        The training set's content hash.

    Raises
    ------
    ValueError
        As :func:`~diffpy_cbldm.training.loop.check_resume`.
    """
    unchanged = {}  # stage run here -> its best.pt stays as it is
    for stage in stages:
        last = out_dir / stage / LAST
        state = load_checkpoint(last) if last.is_file() else None
        if state is not None:
            meta = {
                "config": stage_settings(config, stage),
                "data_sha256": data_hash,
                "upstream": {},
            }
            keys = ["data_sha256", "upstream"]
            for previous in _UPSTREAM[stage]:
                best = out_dir / previous / BEST
                if not unchanged.get(previous, True) or not best.is_file():
                    keys.remove("upstream")
                    break
                meta["upstream"][previous] = file_sha256(best)
            check_resume(state, meta, last, keys)
        unchanged[stage] = (
            state is not None
            and state["epoch"] >= config.stage(stage).epochs
            and (out_dir / stage / BEST).is_file()
        )


# -- the frozen networks of earlier stages ------------------------------


def _load_frozen(out_dir, stage, config, data_hash, device):
    """The best EMA weights of an earlier stage, frozen, and their hash.

    Raises
    ------
    FileNotFoundError
        When the stage has no ``best.pt``.
    ValueError
        When it was trained on another training set, or its network
        configuration differs from `config`'s.
    """
    from diffpy_cbldm.model import build_modules

    path = out_dir / stage / BEST
    if not path.is_file():
        later = STAGES[STAGES.index(stage) + 1]
        raise FileNotFoundError(
            f"stage {later!r} needs the trained {stage} network of stage "
            f"{STAGES.index(stage) + 1}, but {path} does not exist; train "
            f"it first (cbldm train --stage {stage} --out {out_dir} ...)"
        )
    state = load_checkpoint(path)
    if state["data_sha256"] != data_hash:
        raise ValueError(
            f"{path} was trained on another training set (content sha256 "
            f"{state['data_sha256']}, this one {data_hash}); retrain stage "
            f"{stage!r} on it or use its training set"
        )
    saved = state["config"]["model"][stage]
    wanted = json.loads(json.dumps(getattr(config.model, stage).to_dict()))
    changes = config_differences(saved, wanted, prefix=f"model.{stage}.")
    if changes:
        raise ValueError(
            f"{path} holds a {stage} network of another configuration "
            f"({'; '.join(changes)}); retrain stage {stage!r} or use its "
            "configuration"
        )
    last = out_dir / stage / LAST
    if last.is_file():
        done = load_checkpoint(last)["epoch"]
        planned = state["config"][stage]["epochs"]
        if done < planned:
            logger.warning(
                "stage %s has run %d of %d epochs; using its best weights "
                "so far (epoch %d)",
                stage,
                done,
                planned,
                state["epoch"],
            )
    net = build_modules(config.model, [_NETWORK[stage]])[_NETWORK[stage]]
    net.load_state_dict(state["weights"])
    net.to(device).eval().requires_grad_(False)
    return net, file_sha256(path), state


def _conditions(cvae, pdf, device):
    """Latent conditions of every PDF, (n, D, 3000) -> (n, D, C, length).

    The posterior mean of the frozen condition VAE, in float32.
    """
    import torch

    n, draws, npoints = pdf.shape
    flat = pdf.reshape(n * draws, npoints)
    out = []
    with torch.no_grad():
        for k in range(0, len(flat), _ENCODE_BATCH):
            out.append(cvae.condition(flat[k : k + _ENCODE_BATCH].to(device)))
    z_c = torch.cat(out).float().cpu()
    return z_c.reshape(n, draws, *z_c.shape[1:])


def _encode_latents(svae, arrays, z_c, conventions, device):
    """Posterior moments of every (structure, draw) pair.

    Returns
    -------
    mu, logvar : torch.Tensor, each (n, D, latent_channels, 16, 16)
    """
    import torch

    n, draws = z_c.shape[:2]
    step = max(1, _ENCODE_BATCH // draws)
    mus, logvars = [], []
    with torch.no_grad():
        for k in range(0, n, step):
            L = laplacian_batch(
                arrays.positions[k : k + step].to(device),
                arrays.natoms[k : k + step],
                conventions.sigma,
                conventions.max_atoms,
            )
            b = len(L)
            L = L.repeat_interleave(draws, dim=0)
            zc = z_c[k : k + step].reshape(b * draws, *z_c.shape[2:])
            mu, logvar = svae.encode(L, zc.to(device))
            mus.append(mu.float().cpu().reshape(b, draws, *mu.shape[1:]))
            logvars.append(
                logvar.float().cpu().reshape(b, draws, *logvar.shape[1:])
            )
    return torch.cat(mus), torch.cat(logvars)


# -- the stages ----------------------------------------------------------


def _seed_init(seed):
    import numpy as np
    import torch

    words = np.random.SeedSequence(seed, spawn_key=(_INIT_KEY,))
    torch.manual_seed(int(words.generate_state(1)[0]))


def _new_network(config, stage, device):
    from diffpy_cbldm.model import build_modules

    _seed_init(config.stage(stage).seed)
    name = _NETWORK[stage]
    return build_modules(config.model, [name])[name].to(device)


def _condition_task(config, splits, device):
    net = _new_network(config, "condition", device)
    train, val = splits

    def loss(net, batch, kl_weight):
        return net.loss(batch["pdf"], kl_weight=kl_weight)

    return StageTask(
        name="condition",
        net=net,
        train_data=PairDataset(train.n_draws, per_pair={"pdf": train.pdf}),
        val_data=PairDataset(val.n_draws, per_pair={"pdf": val.pdf}),
        loss=loss,
        kl_weight=config.model.condition.kl_weight,
    )


def _estimator_task(config, splits, device, dataset):
    import torch

    from diffpy_cbldm.dataset.store import SETTINGS_COLUMNS

    net = _new_network(config, "estimator", device)
    column = SETTINGS_COLUMNS.index("qdamp")

    def pairs(arrays):
        stype = structure_type_codes(dataset, arrays.rows)
        per_pair = {"pdf": arrays.pdf}
        if net.reads_qdamp:
            # Each PDF's own Qdamp: the informed reader trains on them.
            settings = dataset.array("pdf_settings")[arrays.rows]
            per_pair["qdamp"] = torch.as_tensor(
                settings[..., column], dtype=torch.float32
            )
        return PairDataset(
            arrays.n_draws,
            per_structure={"natoms": arrays.natoms, "stype": stype},
            per_pair=per_pair,
        )

    def loss(net, batch, kl_weight):
        return net.loss(
            batch["pdf"], batch["natoms"], batch["stype"], batch.get("qdamp")
        )

    return StageTask(
        name="estimator",
        net=net,
        train_data=pairs(splits[0]),
        val_data=pairs(splits[1]),
        loss=loss,
    )


def _structure_task(config, splits, cvae, device, dataset):
    import torch

    net = _new_network(config, "structure", device)
    conventions = config.model.conventions
    template = net.config.decoder == "template"
    if template:
        templates = training_templates(dataset, config.split)
        net.decoder.set_sites(templates)

    def pairs(arrays):
        per_structure = {
            "positions": arrays.positions,
            "natoms": arrays.natoms,
        }
        if template:
            seed = config.stage("structure").seed
            targets = site_targets(dataset, arrays, templates, seed)
            per_structure.update({f"site_{k}": v for k, v in targets.items()})
        return PairDataset(
            arrays.n_draws,
            per_structure=per_structure,
            per_pair={"z_c": _conditions(cvae, arrays.pdf, device)},
        )

    def loss(net, batch, kl_weight):
        # The Laplacian is data, built in float32 outside autocast.
        with torch.autocast(device_type=device.type, enabled=False):
            L = laplacian_batch(
                batch["positions"],
                batch["natoms"],
                conventions.sigma,
                conventions.max_atoms,
            )
        sites = None
        if template:
            sites = {
                k[5:]: v for k, v in batch.items() if k.startswith("site_")
            }
        return net.loss(L, batch["z_c"], beta=kl_weight, sites=sites)

    return StageTask(
        name="structure",
        net=net,
        train_data=pairs(splits[0]),
        val_data=pairs(splits[1]),
        loss=loss,
        kl_weight=config.model.structure.kl_weight,
    )


def _latents(stage_dir, splits, cvae, svae, config, meta, ctx):
    """Posterior moments and conditions of every train and val pair,
    computed once by process 0 and cached in ``latents.pt``."""
    path = stage_dir / LATENTS_FILE
    key = {k: meta[k] for k in ("data_sha256", "upstream")}
    key["split"] = config.split

    def usable():
        if not path.is_file():
            return None
        try:
            state = load_checkpoint(path)
        except ValueError:
            return None
        return state if state.get("key") == key else None

    if ctx.is_main and usable() is None:
        device = ctx.device
        conventions = config.model.conventions
        state = {"key": key}
        for name, arrays in zip(("train", "val"), splits):
            z_c = _conditions(cvae, arrays.pdf, device)
            mu, logvar = _encode_latents(
                svae, arrays, z_c, conventions, device
            )
            state[name] = {"z_c": z_c, "mu": mu, "logvar": logvar}
        save_checkpoint(path, state)
        logger.info("encoded the training latents into %s", path)
    ctx.barrier()
    return usable()


def _latent_scale(train, target):
    """``1 / std(z0)`` over every element of the training latents."""
    import torch

    mu, logvar = train["mu"].double(), train["logvar"].double()
    variance = mu.var(unbiased=False)
    if target == "posterior_sample":
        variance = variance + logvar.exp().mean()
    return float(1.0 / torch.sqrt(variance))


def _diffusion_task(config, latents, scale, device):
    import torch

    from diffpy_cbldm.model import make_scheduler

    net = _new_network(config, "diffusion", device)
    scheduler = make_scheduler("ddpm", config.model)
    sample = config.diffusion.latent == "posterior_sample"

    def pairs(part):
        return PairDataset(
            part["mu"].shape[1],
            per_pair={k: part[k] for k in ("z_c", "mu", "logvar")},
        )

    def loss(net, batch, kl_weight):
        z0 = batch["mu"]
        if sample:
            z0 = z0 + torch.exp(0.5 * batch["logvar"]) * torch.randn_like(z0)
        return {"loss": net.loss(scale * z0, batch["z_c"], scheduler)}

    return StageTask(
        name="diffusion",
        net=net,
        train_data=pairs(latents["train"]),
        val_data=pairs(latents["val"]),
        loss=loss,
    )


def _check_exported(out_dir, states, config):
    """The model settings each exported network was trained with (its
    ``best.pt`` keeps them) must be `config`'s; raise ValueError listing
    every difference as ``stage: setting: checkpoint -> configuration``.

    ``latent_scale`` is left out: the export takes it from stage 3's
    checkpoint."""
    changes = []
    for stage, state in states.items():
        saved = dict(state["config"]["model"])
        wanted = stage_settings(config, stage)["model"]
        for settings in (saved, wanted):
            settings.pop("latent_scale", None)
        changes += [
            f"{stage}: {change}"
            for change in config_differences(saved, wanted, prefix="model.")
        ]
    if changes:
        raise ValueError(
            f"cannot export the weights of {out_dir}: the networks were "
            "trained with other model settings than the configuration has "
            f"({'; '.join(changes)}); restore those settings in "
            f"{out_dir / CONFIG_FILE} or retrain the stages named"
        )


def _export(out_dir, config, data_hash, data_name, nn_peak):
    """Write the best EMA networks with ``save_weights``: stages 1-3,
    and the cluster estimator when stage 4 is done. The latent scale is
    the one stage 3 trained with (its checkpoint keeps it); `nn_peak`
    (Å) is the training PDFs' median nearest-neighbour peak, to which
    the weights stretch their inputs.

    Raises
    ------
    ValueError
        When a network was trained with other model settings than
        `config` has (see :func:`_check_exported`).
    """
    import dataclasses

    from diffpy_cbldm.model import build_modules
    from diffpy_cbldm.model.pipeline import DEFAULT_T1, DEFAULT_T2
    from diffpy_cbldm.weights import save_weights

    stages = list(_EXPORTED)
    if (out_dir / "estimator" / BEST).is_file():
        stages.append("estimator")
    states = {
        stage: load_checkpoint(out_dir / stage / BEST) for stage in stages
    }
    _check_exported(out_dir, states, config)
    model_config = dataclasses.replace(
        config.model,
        latent_scale=states["diffusion"]["latent_scale"],
        conventions=dataclasses.replace(
            config.model.conventions, nn_peak=round(nn_peak, 4)
        ),
    )
    modules, metrics = {}, {}
    for stage, state in states.items():
        name = _NETWORK[stage]
        net = build_modules(model_config, [name])[name]
        net.load_state_dict(state["weights"])
        modules[name] = net.eval()
        metrics[stage] = state["metrics"]
    return save_weights(
        out_dir / WEIGHTS_DIR,
        model_config,
        modules,
        metrics=metrics,
        data_hash=data_hash,
        # DPM-Solver as the sampler of the two cbldm segments: the full
        # DDPM chain (700 network calls) takes ~30 s for 10 candidates on
        # one CPU thread, 20 DPM-Solver steps ~1 s.
        sampler_defaults={
            "sampler": "cbldm",
            "base": "dpm",
            "steps": 20,
            "t1": DEFAULT_T1,
            "t2": DEFAULT_T2,
        },
        description=f"CbLDM trained on {data_name} by diffpy_cbldm.training",
    )


def _check_base_weights(stage, base_weights, out_dir, config, data_name):
    """Refuse `base_weights` except for stage 4 alone, a set that fails
    its checksums, and one of other conventions than the training set
    (the input stretch aside), before anything is trained."""
    import dataclasses

    from diffpy_cbldm.weights import load_weights

    if stage != "estimator":
        raise ValueError(
            "base weights stand in for stages 1-3 of a run of stage "
            f"'estimator' alone, not of stage {stage!r}"
        )
    own = [s for s in _EXPORTED if (out_dir / s / BEST).is_file()]
    if own:
        raise ValueError(
            f"{out_dir} has its own stage(s) {', '.join(own)}; base weights "
            "are for a run that trains the cluster estimator alone"
        )
    base_config, _ = load_weights(base_weights)
    ours = dataclasses.replace(config.model.conventions, nn_peak=None)
    theirs = dataclasses.replace(base_config.conventions, nn_peak=None)
    if ours != theirs:
        raise ValueError(
            f"base weights {str(base_weights)!r} were trained with other "
            f"conventions than the training set {data_name}: {theirs} "
            f"against {ours}"
        )


_RETRAINED = "; cluster estimator retrained on "
"""What an exported set's description adds to its base set's (once: a
set exported onto an exported set names only its own estimator's
data)."""


def _export_onto(base, out_dir, config, data_hash, data_name):
    """Write a copy of the weights set `base` (a registered name or a
    folder) whose cluster estimator is this run's best stage-4 network.

    The networks of stages 1-3, the latent scale, the conventions (the
    input stretch ``nn_peak`` included) and the sampler defaults are the
    base set's, tensor for tensor; so are its metrics, except the estimator's
    (this run's) and :data:`PIPELINE_METRICS`, which were measured with
    the base set's estimator. ``data_hash`` stays the hash of the data
    stages 1-3 were trained on; the estimator's training set is recorded
    in ``metrics["estimator_data"]``.
    """
    import dataclasses

    from diffpy_cbldm.model import build_modules
    from diffpy_cbldm.weights import load_weights, read_manifest, save_weights

    base_config, base_modules = load_weights(base)
    manifest = read_manifest(base)
    state = load_checkpoint(out_dir / "estimator" / BEST)
    model_config = dataclasses.replace(
        base_config, estimator=config.model.estimator
    )
    net = build_modules(model_config, ["cluster_estimator"])
    net = net["cluster_estimator"]
    net.load_state_dict(state["weights"])
    modules = dict(base_modules, cluster_estimator=net.eval())
    metrics = {
        key: value
        for key, value in manifest["metrics"].items()
        if key not in PIPELINE_METRICS
    }
    metrics["estimator"] = state["metrics"]
    metrics["estimator_data"] = {"file": data_name, "sha256": data_hash}
    return save_weights(
        out_dir / WEIGHTS_DIR,
        model_config,
        modules,
        metrics=metrics,
        data_hash=manifest["data_hash"],
        sampler_defaults=manifest["sampler_defaults"],
        description=(
            f"{manifest['description'].split(_RETRAINED)[0]}{_RETRAINED}"
            f"{data_name} by diffpy_cbldm.training"
        ),
    )


def _run(
    stage, dataset, out_dir, config, ctx, resume, progress, base_weights=None
):
    """Train one stage; return its best.pt (or the weights folder)."""
    data_hash = dataset.manifest.get("content_sha256")
    splits = (
        load_split(dataset, "train", config.split, config.model.conventions),
        load_split(dataset, "val", config.split, config.model.conventions),
    )
    stage_dir = out_dir / stage
    if ctx.is_main:
        stage_dir.mkdir(parents=True, exist_ok=True)
    ctx.barrier()
    meta = {
        "config": stage_settings(config, stage),
        "run_config": json.loads(json.dumps(config.to_dict())),
        "data_sha256": data_hash,
        "upstream": {},
    }
    device = ctx.device
    if stage == "condition":
        task = _condition_task(config, splits, device)
    elif stage == "estimator":
        task = _estimator_task(config, splits, device, dataset)
    else:
        cvae, c_hash, _ = _load_frozen(
            out_dir, "condition", config, data_hash, device
        )
        meta["upstream"]["condition"] = c_hash
    if stage == "structure":
        task = _structure_task(config, splits, cvae, device, dataset)
    if stage == "diffusion":
        svae, s_hash, s_state = _load_frozen(
            out_dir, "structure", config, data_hash, device
        )
        if s_state["upstream"].get("condition") != c_hash:
            raise ValueError(
                f"{out_dir / 'structure' / BEST} was trained on another "
                f"condition network than {out_dir / 'condition' / BEST}; "
                "retrain stage 'structure'"
            )
        meta["upstream"]["structure"] = s_hash
        latents = _latents(stage_dir, splits, cvae, svae, config, meta, ctx)
        scale = config.model.latent_scale
        if config.diffusion.fit_latent_scale:
            scale = _latent_scale(latents["train"], config.diffusion.latent)
        meta["latent_scale"] = scale
        del cvae, svae
        task = _diffusion_task(config, latents, scale, device)
    logger.info(
        "stage %s: %d training and %d validation structures, %d "
        "process(es) on %s",
        stage,
        len(splits[0]),
        len(splits[1]),
        ctx.world_size,
        device,
    )
    run_stage(
        task,
        config.stage(stage),
        stage_dir,
        ctx,
        meta,
        resume=resume,
        progress=progress,
    )
    done = all((out_dir / s / BEST).is_file() for s in _EXPORTED)
    if stage == "estimator" and base_weights is not None:
        path = None
        if ctx.is_main:
            path = _export_onto(
                base_weights, out_dir, config, data_hash, dataset.path.name
            )
        ctx.barrier()
        return Path(path) if path else out_dir / WEIGHTS_DIR
    if stage in ("diffusion", "estimator") and done:
        path = None
        if ctx.is_main:
            path = _export(
                out_dir,
                config,
                data_hash,
                dataset.path.name,
                median_nn_peak(splits[0].pdf, config.model.conventions.rgrid),
            )
        ctx.barrier()
        return Path(path) if path else out_dir / WEIGHTS_DIR
    return stage_dir / BEST


def train(
    stage,
    data,
    out_dir,
    config=None,
    *,
    resume=True,
    progress=True,
    device=None,
    base_weights=None,
):
    """Train CbLDM: one stage, or all four in order.

    Run it as it is for one process, or under ``torchrun`` for several
    (one per GPU, or CPU processes on the gloo backend): each process
    then trains on its share of every batch and process 0 writes the
    files.

    Parameters
    ----------
    stage : {"condition", "structure", "diffusion", "estimator", "all"}
        "condition" (Alg. 1), "structure" (Alg. 2, needs stage 1 in
        `out_dir`), "diffusion" (Alg. 3, needs stages 1 and 2),
        "estimator" (the cluster estimator, needs no other stage), or
        "all" four in order.
    data : path-like
        The training set (``cbldm dataset build``).
    out_dir : path-like
        Output folder; created if missing. See the module docstring.
    config : RunConfig, optional
        Default: ``OUT/config.json`` if present, else
        :func:`default_config` for `data`.
    resume : bool
        Continue each stage from its ``last.pt``; a finished stage is
        skipped. False starts the stage(s) afresh.
    progress : bool
        Show progress bars.
    device : {"cpu", "cuda"}, optional
        Default: CUDA when available.
    base_weights : str or path-like, optional
        Only with ``stage="estimator"`` and no stages 1-3 in `out_dir`:
        a weights set (registered name or folder) onto which the
        trained cluster estimator is exported (``OUT/weights``, a copy
        of that set with this estimator; see the module docstring). Its
        conventions must be the training set's.

    Returns
    -------
    pathlib.Path
        The exported weights folder (``OUT/weights``) for "diffusion",
        "estimator" and "all" once stages 1-3 are done, and for
        "estimator" with `base_weights`; the stage's ``best.pt``
        otherwise.

    Raises
    ------
    ValueError
        For an unknown stage, a configuration whose conventions differ
        from the training set's, a checkpoint of another run, or an
        export whose networks were trained with other model settings
        than `config` has. A stage that cannot be resumed (other
        settings, training set or previous weights than its ``last.pt``)
        is refused before any file is written, ``config.json``
        included.
    FileNotFoundError
        When `data` does not exist, or an earlier stage's weights are
        missing.
    """
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.training import distributed

    if stage not in TRAIN_STAGES:
        raise ValueError(
            f"unknown training stage {stage!r}; choose from {TRAIN_STAGES}"
        )
    data = Path(data)
    if not data.is_file():
        raise FileNotFoundError(f"training set {data} not found")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output {out_dir} is not a folder")
    ctx = distributed.setup(device)
    try:
        with open_dataset(data) as dataset:
            # Every check before the first file is written.
            config = _resolve_config(config, out_dir, data)
            config = _decide_precision(config, ctx.device)
            _check_conventions(config.model.conventions, dataset)
            if base_weights is not None:
                _check_base_weights(
                    stage, base_weights, out_dir, config, data.name
                )
            stages = STAGES if stage == "all" else (stage,)
            if resume:
                _check_resumable(
                    stages,
                    out_dir,
                    config,
                    dataset.manifest.get("content_sha256"),
                )
            if ctx.is_main:
                _write_config(config, out_dir)
            ctx.barrier()
            for name in stages:
                result = _run(
                    name,
                    dataset,
                    out_dir,
                    config,
                    ctx,
                    resume,
                    progress,
                    base_weights,
                )
        return result
    finally:
        ctx.close()
