"""Training in separate processes: two CPU processes under ``torchrun``
(gloo backend), and a run killed with SIGKILL and resumed."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from diffpy_cbldm.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

CLI = ["-m", "diffpy_cbldm.training.cli"]


def _env():
    # One thread per process, as torchrun sets it, so that runs compare.
    return dict(os.environ, OMP_NUM_THREADS="1")


def _train_args(data, out, config_file, stage):
    return [
        "--data",
        str(data),
        "--out",
        str(out),
        "--stage",
        stage,
        "--config",
        str(config_file),
        "--no-progress",
    ]


def test_two_processes_on_gloo_train_all_stages(
    tiny_set, tiny_config_file, tmp_path
):
    from diffpy_cbldm.weights import load_weights

    out = tmp_path / "out"
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
    ]
    done = subprocess.run(
        torchrun + CLI + _train_args(tiny_set, out, tiny_config_file, "all"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es) on cpu" in done.stderr
    for stage in ("condition", "structure", "diffusion", "estimator"):
        state = load_checkpoint(out / stage / "last.pt")
        assert state["world_size"] == 2 and state["epoch"] == 2
        assert len(state["rng"]) == 2
        # 71 training structures, 36 per process, batches of 8: 5 steps
        # per epoch (one process alone takes 9).
        assert state["step"] == 2 * 5
        assert load_checkpoint(out / stage / "best.pt")["weights"]
    config, modules = load_weights(out / "weights")
    assert set(modules) == {
        "condition_vae",
        "structure_vae",
        "denoiser",
        "cluster_estimator",
    }


def _wait_for_step(path, step, process, timeout=300):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            pytest.fail(f"training ended before step {step}")
        if path.is_file():
            try:
                if load_checkpoint(path)["step"] >= step:
                    return
            except ValueError:
                pass  # caught between two writes: impossible, but retry
        time.sleep(0.05)
    pytest.fail(f"no checkpoint at step {step} within {timeout} s")


def test_sigkill_then_resume_gives_the_same_weights(
    tiny_set, tiny_config, tmp_path
):
    import json

    # 71 structures in batches of 4: 18 steps per epoch, 54 in all.
    config = tiny_config.with_stage_settings(
        ("condition",), epochs=3, batch_size=4, checkpoint_minutes=1e-9
    )
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config.to_dict()))

    reference = tmp_path / "reference"
    subprocess.run(
        [sys.executable]
        + CLI
        + _train_args(tiny_set, reference, config_file, "condition"),
        env=_env(),
        check=True,
        capture_output=True,
        timeout=600,
    )

    out = tmp_path / "killed"
    args = _train_args(tiny_set, out, config_file, "condition")
    process = subprocess.Popen(
        [sys.executable] + CLI + args,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_step(out / "condition" / "last.pt", 12, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    killed_at = load_checkpoint(out / "condition" / "last.pt")["step"]
    assert killed_at < 54  # it was killed before the end
    subprocess.run(
        [sys.executable] + CLI + args,
        env=_env(),
        check=True,
        capture_output=True,
        timeout=600,
    )
    a = load_checkpoint(reference / "condition" / "last.pt")
    b = load_checkpoint(out / "condition" / "last.pt")
    for key in ("model",):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), name
    for name in a["ema"]["module"]:
        assert torch.equal(a["ema"]["module"][name], b["ema"]["module"][name])
    assert [r["val_loss"] for r in a["history"]] == [
        r["val_loss"] for r in b["history"]
    ]
