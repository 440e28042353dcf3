"""The four training stages on a tiny real training set: learning,
files, resuming to identical weights, exported weights, bad input."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

import diffpy_cbldm.training.loop as loop
from diffpy_cbldm.training import train
from diffpy_cbldm.training.checkpoint import load_checkpoint
from diffpy_cbldm.training.stages import stage_settings

STAGES = ("condition", "structure", "diffusion", "estimator")


class Killed(BaseException):
    """Stands for SIGKILL: raised right after a checkpoint is written."""


def _kill_after(monkeypatch, writes):
    """Make training die right after its `writes`-th ``last.pt``."""
    real = loop.save_checkpoint
    count = {"n": 0}

    def save_then_die(path, state):
        out = real(path, state)
        if path.name == loop.LAST:
            count["n"] += 1
            if count["n"] == writes:
                raise Killed
        return out

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)


def _weights(path):
    state = load_checkpoint(path)
    return state["model"], state["ema"]["module"]


def _assert_identical(a, b):
    for sa, sb in zip(_weights(a), _weights(b)):
        assert sa.keys() == sb.keys()
        for name in sa:
            assert torch.equal(sa[name], sb[name]), name


@pytest.fixture(scope="module")
def run(tiny_set, tiny_config, tmp_path_factory):
    """All four stages, 2 epochs each, uninterrupted."""
    out = tmp_path_factory.mktemp("run") / "out"
    weights = train("all", tiny_set, out, tiny_config, progress=False)
    return out, weights


def _copy_stages(run_dir, dest, stages):
    dest.mkdir()
    for stage in stages:
        shutil.copytree(run_dir / stage, dest / stage)


# -- learning ------------------------------------------------------------


@pytest.mark.parametrize("stage", ["condition", "structure"])
def test_vae_overfits_a_tiny_set(stage, run, tiny_set, tiny_config, tmp_path):
    """A few epochs at a high rate (4 for the condition VAE, 10 for the
    structure VAE, whose template decoder learns a site field): the
    reconstruction error must fall by half and the loss must fall. (The
    structure VAE's loss also holds the atom-count cross-entropy, about
    ln(60) nats at first, which a few epochs of 71 clusters barely
    move.)"""
    config = tiny_config.with_stage_settings(
        (stage,),
        epochs=4 if stage == "condition" else 10,
        lr=3e-3,
        ema_decay=0.9,
    )
    out = tmp_path / "out"
    if stage == "structure":
        _copy_stages(run[0], out, ("condition",))
    train(stage, tiny_set, out, config, progress=False)
    history = load_checkpoint(out / stage / "last.pt")["history"]
    first, last = history[0], history[-1]
    assert last["train_loss"] < first["train_loss"]
    assert last["train_rec"] < 0.5 * first["train_rec"]
    assert last["val_loss"] < first["val_loss"]


def test_cluster_estimator_learns(tiny_set, tiny_config, tmp_path):
    """The estimator stage needs no other stage. After 30 epochs (3 s)
    the errors in ln n of both readers (blind, and informed: told each
    PDF's Qdamp) on the training clusters must have halved. The held-out
    clusters are whole windows of the icosahedral families (val: 10-13
    atoms and one of 60; test: 5-9), with no training relative within 5
    atoms, so they improve less: measured 1.05 to 0.46 (blind) and 0.92
    to 0.73 (informed). The tiny set holds one type, which it learns at
    once. Without the other stages, no weights are exported."""
    config = tiny_config.with_stage_settings(
        ("estimator",), epochs=30, lr=1e-2, ema_decay=0.9
    )
    out = tmp_path / "out"
    result = train("estimator", tiny_set, out, config, progress=False)
    assert result == out / "estimator" / "best.pt"
    assert not (out / "weights").exists()
    history = load_checkpoint(out / "estimator" / "last.pt")["history"]
    first, last = history[0], history[-1]
    for reader in ("", "_qdamp"):
        key = f"train_abs_error{reader}"
        assert last[key] < 0.5 * first[key], key
        key = f"val_abs_error{reader}"
        assert last[key] < 0.85 * first[key], key
    # At this learning rate the variance of ln n grows overconfident on
    # the few held-out clusters (their loss, a Gaussian NLL, is lowest
    # after the first epoch here); the epoch of lowest val loss is kept.
    best = load_checkpoint(out / "estimator" / "best.pt")["metrics"]
    assert best["val_loss"] == min(row["val_loss"] for row in history)


def test_denoiser_learns(run, tiny_set, tiny_config, tmp_path):
    """Predicting zero noise costs E[eps^2] = 1; after six epochs the
    noise-prediction error must lie well below that. (Posterior means:
    the posterior spread of a VAE trained for two epochs is wide, and
    noise added to z0 is noise no network can predict.)"""
    config = tiny_config.with_stage_settings(
        ("diffusion",),
        epochs=6,
        lr=3e-3,
        ema_decay=0.9,
        latent="posterior_mean",
    )
    out = tmp_path / "out"
    _copy_stages(run[0], out, ("condition", "structure"))
    train("diffusion", tiny_set, out, config, progress=False)
    history = load_checkpoint(out / "diffusion" / "last.pt")["history"]
    assert history[-1]["train_loss"] < 0.5
    assert history[-1]["val_loss"] < 0.5
    assert history[-1]["train_loss"] < history[0]["train_loss"]


# -- files ---------------------------------------------------------------


def test_every_stage_writes_its_files(run):
    out, _ = run
    assert (out / "config.json").is_file()
    for stage in STAGES:
        folder = out / stage
        for name in ("last.pt", "best.pt", "losses.csv", "losses.png"):
            assert (folder / name).is_file(), folder / name
        assert not list(folder.glob("*.part"))
        assert (folder / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loss_curves_hold_one_row_per_epoch(run, tiny_config):
    out, _ = run
    for stage in STAGES:
        with open(out / stage / "losses.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert [int(r["epoch"]) for r in rows] == [1, 2]
        steps = [int(r["step"]) for r in rows]
        assert steps[1] == 2 * steps[0] > 0
        for row in rows:
            # The estimator's Gaussian NLL (no constant) can be < 0.
            for key in ("train_loss", "val_loss"):
                value = float(row[key])
                assert value > 0 if stage != "estimator" else abs(value) < 10
            assert float(row["samples_per_s"]) > 0
        if stage in ("condition", "structure"):
            assert {"train_rec", "train_kl", "val_rec", "val_kl"} <= set(
                rows[0]
            )
        if stage == "estimator":
            assert {
                "val_abs_error",
                "val_within_10pct",
                "val_type_accuracy",
            } <= set(rows[0])


def test_checkpoints_carry_the_configuration(run, tiny_set, tiny_config):
    out, _ = run
    saved = json.loads((out / "config.json").read_text())
    assert saved == json.loads(json.dumps(tiny_config.to_dict()))
    from diffpy_cbldm.dataset.store import open_dataset

    with open_dataset(tiny_set) as ds:
        data_hash = ds.manifest["content_sha256"]
    for stage in STAGES:
        for name in ("last.pt", "best.pt"):
            state = load_checkpoint(out / stage / name)
            assert state["config"] == stage_settings(tiny_config, stage)
            assert state["run_config"] == saved
            assert state["data_sha256"] == data_hash
        last = load_checkpoint(out / stage / "last.pt")
        assert last["epoch"] == 2 and last["step_in_epoch"] == 0
        for key in ("optimizer", "scheduler", "ema", "rng"):
            assert last[key]


def test_best_checkpoint_is_the_best_epoch(run):
    out, _ = run
    for stage in STAGES:
        history = load_checkpoint(out / stage / "last.pt")["history"]
        best = load_checkpoint(out / stage / "best.pt")
        losses = [row["val_loss"] for row in history]
        assert best["epoch"] == 1 + losses.index(min(losses))
        assert best["metrics"]["val_loss"] == min(losses)


def test_exported_weights_are_the_best_ema_weights(run, tiny_set, tiny_config):
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.pdf.peaks import first_peak
    from diffpy_cbldm.training.data import load_split
    from diffpy_cbldm.weights import load_weights, read_manifest

    out, weights = run
    assert weights == out / "weights"
    config, modules = load_weights(weights)
    scale = load_checkpoint(out / "diffusion" / "last.pt")["latent_scale"]
    # The inputs are stretched to the training PDFs' median
    # nearest-neighbour peak, read here independently of the export.
    train = load_split(
        open_dataset(tiny_set),
        "train",
        tiny_config.split,
        tiny_config.model.conventions,
    )
    r = tiny_config.model.conventions.rgrid
    peaks = [first_peak(r, g) for g in train.pdf.reshape(-1, len(r)).numpy()]
    expected = tiny_config.model.to_dict()
    expected["conventions"]["nn_peak"] = round(float(np.median(peaks)), 4)
    assert config == tiny_config.model.__class__.from_dict(
        dict(expected, latent_scale=scale)
    )
    assert 2.4 < config.conventions.nn_peak < 3.1
    names = {
        "condition": "condition_vae",
        "structure": "structure_vae",
        "diffusion": "denoiser",
        "estimator": "cluster_estimator",
    }
    assert set(modules) == set(names.values())
    manifest = read_manifest(weights)
    for stage, name in names.items():
        best = load_checkpoint(out / stage / "best.pt")
        for key, value in modules[name].state_dict().items():
            assert torch.equal(value, best["weights"][key]), (name, key)
        assert manifest["metrics"][stage] == best["metrics"]
    with open_dataset(tiny_set) as ds:
        assert manifest["data_hash"] == ds.manifest["content_sha256"]


def test_estimator_exported_onto_base_weights(
    run, tiny_set, tiny_config, tmp_path
):
    """A run of stage 4 alone with base weights writes a copy of the base
    set: the tensors of stages 1-3 unchanged, this run's estimator, the
    base's data hash and conventions, the estimator's own training set
    named, and no pipeline results measured with the base's estimator."""
    import dataclasses

    from diffpy_cbldm import CbLDMGenerator
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.training.stages import PIPELINE_METRICS, _export_onto
    from diffpy_cbldm.weights import load_weights, read_manifest

    _, base = run
    # The base set as a benchmark leaves it: with a pipeline result.
    manifest = read_manifest(base)
    manifest["metrics"]["test_evaluation"] = {"cases": 1}
    (base / "manifest.json").write_text(json.dumps(manifest))
    config = dataclasses.replace(
        tiny_config.with_stage_settings(("estimator",), seed=7),
        model=dataclasses.replace(
            tiny_config.model,
            estimator=dataclasses.replace(
                tiny_config.model.estimator, hidden=24
            ),
        ),
    )
    out = tmp_path / "out"
    exported = train(
        "estimator", tiny_set, out, config, progress=False, base_weights=base
    )
    assert exported == out / "weights"
    _, base_modules = load_weights(base)
    config_new, modules = load_weights(exported)
    for name in ("condition_vae", "structure_vae", "denoiser"):
        ours = modules[name].state_dict()
        theirs = base_modules[name].state_dict()
        assert ours.keys() == theirs.keys()
        for key, value in ours.items():
            assert torch.equal(value, theirs[key]), (name, key)
    new = read_manifest(exported)
    best = load_checkpoint(out / "estimator" / "best.pt")
    assert new["metrics"]["estimator"] == best["metrics"]
    assert not set(PIPELINE_METRICS) & set(new["metrics"])
    for key in ("condition", "structure", "diffusion"):
        assert new["metrics"][key] == manifest["metrics"][key]
    assert new["data_hash"] == manifest["data_hash"]
    assert new["conventions"] == manifest["conventions"]
    with open_dataset(tiny_set) as ds:
        assert new["metrics"]["estimator_data"] == {
            "file": tiny_set.name,
            "sha256": ds.manifest["content_sha256"],
        }
    assert config_new.estimator.hidden == 24
    for key, value in modules["cluster_estimator"].state_dict().items():
        assert torch.equal(value, best["weights"][key]), key
    gen = CbLDMGenerator.from_pretrained(exported)
    assert "cluster_estimator" in gen.modules
    # Exported onto the exported set, the description names only the
    # last estimator's data.
    assert new["description"].count("cluster estimator retrained on") == 1
    again = tmp_path / "again"
    (again / "estimator").mkdir(parents=True)
    shutil.copy(out / "estimator" / "best.pt", again / "estimator")
    twice = read_manifest(
        _export_onto(exported, again, config, "0" * 64, "other.h5")
    )
    assert twice["description"].count("cluster estimator retrained on") == 1
    assert twice["description"].endswith(
        "retrained on other.h5 by " "diffpy_cbldm.training"
    )


def test_base_weights_are_for_stage_four_alone(run, tiny_set, tmp_path):
    from diffpy_cbldm.weights import WeightsError

    out, base = run
    with pytest.raises(ValueError, match="not of stage 'all'"):
        train("all", tiny_set, tmp_path / "a", base_weights=base)
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="has its own stage"):
        train("estimator", tiny_set, out, base_weights=base)
    with pytest.raises(WeightsError, match="no-such-set"):
        train(
            "estimator", tiny_set, tmp_path / "b", base_weights="no-such-set"
        )
    assert not (tmp_path / "b" / "estimator").exists()


def test_base_weights_of_other_conventions_are_refused(
    run, tiny_set, tmp_path
):
    from diffpy_cbldm.weights import save_weights
    from diffpy_cbldm.weights import load_weights, read_manifest

    config, modules = load_weights(run[1])
    manifest = read_manifest(run[1])
    other = config.__class__.from_dict(
        dict(
            config.to_dict(),
            conventions=dict(
                manifest["conventions"],
                pdf=dict(manifest["conventions"]["pdf"], biso=0.5),
            ),
        )
    )
    base = tmp_path / "other"
    save_weights(
        base,
        other,
        {"condition_vae": modules["condition_vae"]},
        metrics={},
        data_hash="h",
        sampler_defaults={},
    )
    with pytest.raises(ValueError, match="other conventions"):
        train("estimator", tiny_set, tmp_path / "c", base_weights=base)
    assert not (tmp_path / "c").exists()


def test_latent_scale_whitens_the_training_latents(run):
    """latent_scale = 1 / std of z0 = mu + sigma eps over the training
    latents: var(z0) = var(mu) + mean(sigma^2)."""
    out, _ = run
    latents = load_checkpoint(out / "diffusion" / "latents.pt")["train"]
    mu, logvar = latents["mu"].double(), latents["logvar"].double()
    torch.manual_seed(0)
    draws = mu + torch.exp(0.5 * logvar) * torch.randn(200, *mu.shape)
    scale = load_checkpoint(out / "diffusion" / "last.pt")["latent_scale"]
    assert (scale * draws).std().item() == pytest.approx(1.0, rel=0.01)


def test_finished_run_is_not_trained_again(run, tiny_set):
    out, _ = run
    before = {s: (out / s / "last.pt").read_bytes() for s in STAGES}
    train("all", tiny_set, out, progress=False)
    for stage in STAGES:
        assert (out / stage / "last.pt").read_bytes() == before[stage]


# -- resuming ------------------------------------------------------------


def test_killed_after_one_epoch_resumes_to_the_same_weights(
    run, tiny_set, tiny_config, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    _kill_after(monkeypatch, writes=1)
    with pytest.raises(Killed):
        train("condition", tiny_set, out, tiny_config, progress=False)
    assert load_checkpoint(out / "condition" / "last.pt")["epoch"] == 1
    monkeypatch.undo()
    train("condition", tiny_set, out, tiny_config, progress=False)
    _assert_identical(
        run[0] / "condition" / "last.pt", out / "condition" / "last.pt"
    )
    a = load_checkpoint(run[0] / "condition" / "last.pt")["history"]
    b = load_checkpoint(out / "condition" / "last.pt")["history"]
    for row_a, row_b in zip(a, b):
        assert row_a["val_loss"] == row_b["val_loss"]
        assert row_a["train_loss"] == row_b["train_loss"]


@pytest.mark.parametrize("stage", ["structure", "diffusion"])
def test_killed_mid_epoch_resumes_to_the_same_weights(
    stage, run, tiny_set, tiny_config, tmp_path, monkeypatch
):
    """A checkpoint after every step; killed after the 3rd, within the
    first epoch. The checkpoint frequency does not change the result."""
    config = tiny_config.with_stage_settings((stage,), checkpoint_minutes=1e-9)
    out = tmp_path / "out"
    upstream = STAGES[: STAGES.index(stage)]
    _copy_stages(run[0], out, upstream)
    _kill_after(monkeypatch, writes=3)
    with pytest.raises(Killed):
        train(stage, tiny_set, out, config, progress=False)
    state = load_checkpoint(out / stage / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (0, 3)
    monkeypatch.undo()
    train(stage, tiny_set, out, config, progress=False)
    _assert_identical(run[0] / stage / "last.pt", out / stage / "last.pt")


def test_bf16_run_resumes_to_the_same_weights(
    tiny_set, tiny_config, tmp_path, monkeypatch
):
    config = tiny_config.with_stage_settings(
        ("condition",), precision="bf16", checkpoint_minutes=1e-9
    )
    train("condition", tiny_set, tmp_path / "a", config, progress=False)
    _kill_after(monkeypatch, writes=5)
    with pytest.raises(Killed):
        train("condition", tiny_set, tmp_path / "b", config, progress=False)
    monkeypatch.undo()
    train("condition", tiny_set, tmp_path / "b", config, progress=False)
    _assert_identical(
        tmp_path / "a" / "condition" / "last.pt",
        tmp_path / "b" / "condition" / "last.pt",
    )


def test_auto_precision_is_decided_when_training_starts(
    tiny_set, tiny_config, tmp_path
):
    """precision "auto" becomes bf16 or fp32 for the device, as
    native_bfloat16 says, before config.json and the checkpoints are
    written; a stage given fp32 keeps it; the run then resumes (here:
    finds itself finished) with "auto" asked for again."""
    from diffpy_cbldm.training.distributed import native_bfloat16

    config = tiny_config.with_stage_settings(
        ("condition",), precision="auto", epochs=1
    )
    train("condition", tiny_set, tmp_path, config, progress=False)
    chosen = "bf16" if native_bfloat16(torch.device("cpu")) else "fp32"
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["condition"]["precision"] == chosen
    assert saved["structure"]["precision"] == "fp32"
    state = load_checkpoint(tmp_path / "condition" / "last.pt")
    assert state["config"]["condition"]["precision"] == chosen
    train("condition", tiny_set, tmp_path, config, progress=False)
    again = load_checkpoint(tmp_path / "condition" / "last.pt")
    assert again["epoch"] == 1


def test_native_bfloat16_reads_the_cpu_flags():
    """The CPU answer agrees with the flags lscpu prints."""
    import subprocess

    from diffpy_cbldm.training.distributed import native_bfloat16

    try:
        text = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no lscpu here")
    flags = set()
    for line in text.splitlines():
        if line.startswith("Flags:"):
            flags = set(line.split(":", 1)[1].split())
    if not flags:
        pytest.skip("lscpu prints no flags here")
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert native_bfloat16(torch.device("cpu")) is native


def test_no_resume_starts_afresh(run, tiny_set, tiny_config, tmp_path):
    out = tmp_path / "out"
    _copy_stages(run[0], out, ("condition",))
    config = tiny_config.with_stage_settings(("condition",), epochs=1)
    train("condition", tiny_set, out, config, resume=False, progress=False)
    state = load_checkpoint(out / "condition" / "last.pt")
    assert state["epoch"] == 1 and len(state["history"]) == 1


# -- bad input -----------------------------------------------------------


def test_unknown_stage_is_named(tiny_set, tmp_path):
    with pytest.raises(ValueError, match="'decoder'"):
        train("decoder", tiny_set, tmp_path / "out")


def test_missing_training_set_is_named(tmp_path):
    missing = tmp_path / "missing.h5"
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        train("condition", missing, tmp_path / "out")


def test_file_that_is_no_training_set_is_refused(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not HDF5")
    with pytest.raises(ValueError, match="notes.h5"):
        train("condition", path, tmp_path / "out")


def test_output_that_is_a_file_is_refused(tiny_set, tmp_path):
    path = tmp_path / "out"
    path.write_text("")
    with pytest.raises(NotADirectoryError, match="out"):
        train("condition", tiny_set, path)


def test_structure_without_stage_one_is_refused(
    tiny_set, tiny_config, tmp_path
):
    with pytest.raises(FileNotFoundError, match="condition.best.pt"):
        train("structure", tiny_set, tmp_path / "out", tiny_config)


def test_diffusion_without_stage_two_is_refused(
    run, tiny_set, tiny_config, tmp_path
):
    out = tmp_path / "out"
    _copy_stages(run[0], out, ("condition",))
    with pytest.raises(FileNotFoundError, match="structure.best.pt"):
        train("diffusion", tiny_set, out, tiny_config)


def test_resuming_with_other_settings_is_refused(
    run, tiny_set, tiny_config, tmp_path
):
    out = tmp_path / "out"
    _copy_stages(run[0], out, ("condition",))
    config = tiny_config.with_stage_settings(("condition",), lr=0.1)
    with pytest.raises(ValueError, match="condition.lr"):
        train("condition", tiny_set, out, config, progress=False)


def test_later_stage_settings_do_not_block_earlier_stages(
    run, tiny_set, tiny_config, tmp_path
):
    out = tmp_path / "out"
    _copy_stages(run[0], out, ("condition",))
    config = tiny_config.with_stage_settings(("structure",), lr=0.1)
    before = (out / "condition" / "last.pt").read_bytes()
    train("condition", tiny_set, out, config, progress=False)
    assert (out / "condition" / "last.pt").read_bytes() == before


def test_stage_two_of_another_stage_one_is_refused(
    run, tiny_set, tiny_config, tmp_path
):
    """Retraining stage 1 invalidates a stage-2 checkpoint built on it."""
    out = tmp_path / "out"
    _copy_stages(run[0], out, ("condition", "structure"))
    config = tiny_config.with_stage_settings(("condition",), seed=5)
    train("condition", tiny_set, out, config, resume=False, progress=False)
    with pytest.raises(ValueError, match="weights of the previous stage"):
        train("structure", tiny_set, out, config, progress=False)


def test_conventions_of_another_training_set_are_refused(
    tiny_set, tiny_config, tmp_path
):
    import dataclasses

    model = tiny_config.model
    sigma = model.conventions.sigma + 1.0
    conventions = dataclasses.replace(model.conventions, sigma=sigma)
    structure = dataclasses.replace(model.structure, sigma=sigma)
    config = tiny_config.replace(
        model=dataclasses.replace(
            model, conventions=conventions, structure=structure
        )
    )
    with pytest.raises(ValueError, match="Laplacian sigma"):
        train("condition", tiny_set, tmp_path / "out", config)


def test_config_of_wrong_type_is_refused(tiny_set, tmp_path):
    with pytest.raises(ValueError, match="RunConfig"):
        train("condition", tiny_set, tmp_path / "out", {"epochs": 3})


def test_missing_adan_is_explained(
    tiny_set, tiny_config, tmp_path, monkeypatch
):
    import sys

    monkeypatch.setitem(sys.modules, "adan_pytorch", None)
    config = tiny_config.with_stage_settings(("condition",), optimizer="adan")
    with pytest.raises(ImportError, match="pip install adan-pytorch"):
        train("condition", tiny_set, tmp_path / "out", config)


def test_stage_one_of_another_training_set_is_refused(
    tiny_set, tiny_config, tmp_path
):
    from diffpy_cbldm.dataset.build import build_dataset

    other = build_dataset(
        tmp_path / "other.h5",
        types=("octahedral",),
        max_atoms=20,
        metals_per_shape=1,
        workers=1,
        progress=False,
    )
    out = tmp_path / "out"
    config = tiny_config.with_stage_settings(("condition",), epochs=1)
    train("condition", other, out, config, progress=False)
    with pytest.raises(ValueError, match="another training set"):
        train("structure", tiny_set, out, config, progress=False)


def test_diverging_loss_stops_with_a_clear_error(
    tiny_set, tiny_config, tmp_path
):
    config = tiny_config.with_stage_settings(
        ("condition",), lr=1e30, grad_clip=None, warmup_steps=0
    )
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train("condition", tiny_set, tmp_path / "out", config)


def test_worker_processes_give_the_same_weights(
    run, tiny_set, tiny_config, tmp_path
):
    config = tiny_config.with_stage_settings(("structure",), num_workers=2)
    out = tmp_path / "out"
    _copy_stages(run[0], out, ("condition",))
    train("structure", tiny_set, out, config, progress=False)
    _assert_identical(
        run[0] / "structure" / "last.pt", out / "structure" / "last.pt"
    )


# -- refused runs leave the output folder alone --------------------------


def _snapshot(folder):
    """Every file under `folder` (relative path -> bytes)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize(
    "stage, changed",
    [
        ("condition", "condition"),
        ("all", "diffusion"),
        ("diffusion", "diffusion"),
    ],
)
def test_refused_resume_leaves_the_folder_as_it_was(
    stage, changed, run, tiny_set, tiny_config, tmp_path
):
    """A resume refused for other settings writes nothing, config.json
    included, so that the original command still resumes."""
    out = tmp_path / "out"
    _copy_stages(run[0], out, STAGES)
    shutil.copy(run[0] / "config.json", out / "config.json")
    before = _snapshot(out)
    config = tiny_config.with_stage_settings((changed,), epochs=3)
    with pytest.raises(ValueError, match=rf"{changed}\.epochs: 2 -> 3"):
        train(stage, tiny_set, out, config, progress=False)
    assert _snapshot(out) == before
    # The original configuration (OUT/config.json) still resumes: the
    # stage is finished, nothing is trained again.
    train(stage, tiny_set, out, progress=False)
    for name in STAGES:
        assert (out / name / "last.pt").read_bytes() == before[
            f"{name}/last.pt"
        ]


def test_resume_on_another_stage_one_writes_nothing(
    run, tiny_set, tiny_config, tmp_path
):
    """The previous stage's weights are compared before config.json is
    written too, when they will not change in this run."""
    out = tmp_path / "out"
    _copy_stages(run[0], out, ("condition", "structure"))
    config = tiny_config.with_stage_settings(("condition",), seed=5)
    train("condition", tiny_set, out, config, resume=False, progress=False)
    before = _snapshot(out)
    other = config.with_stage_settings(("structure",), seed=7)
    with pytest.raises(ValueError, match="weights of the previous stage"):
        train("structure", tiny_set, out, other, progress=False)
    assert _snapshot(out) == before


# -- export against the checkpoints' configuration -----------------------


@pytest.mark.parametrize(
    "key, value", [("beta_schedule", "linear"), ("num_train_timesteps", 500)]
)
def test_export_of_other_network_settings_is_refused(
    key, value, run, tiny_set, tiny_config, tmp_path
):
    """config.json edited after training: the export would describe the
    networks wrongly, so it is refused, naming stage, setting and both
    values."""
    import dataclasses

    out = tmp_path / "out"
    _copy_stages(run[0], out, STAGES)
    saved = getattr(tiny_config.model, key)
    model = dataclasses.replace(tiny_config.model, **{key: value})
    values = tiny_config.replace(model=model).to_dict()
    (out / "config.json").write_text(json.dumps(values))
    with pytest.raises(
        ValueError,
        match=rf"diffusion: model\.{key}: {saved!r} -> {value!r}",
    ):
        train("estimator", tiny_set, out, progress=False)
    assert not (out / "weights").exists()
