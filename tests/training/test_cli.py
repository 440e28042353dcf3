"""``python -m diffpy_cbldm.training.cli`` (the options of cbldm train)."""

import argparse
import json

import pytest

from diffpy_cbldm.training.checkpoint import load_checkpoint
from diffpy_cbldm.training.cli import add_train_arguments, main


def _args(tiny_set, out, *extra):
    return [
        "--data",
        str(tiny_set),
        "--stage",
        "condition",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def test_options_reach_the_stage_trained(
    tiny_set, tiny_config_file, tmp_path, capsys
):
    out = tmp_path / "out"
    main(
        _args(
            tiny_set,
            out,
            "--config",
            str(tiny_config_file),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--seed",
            "3",
            "--precision",
            "bf16",  # the tiny configuration trains in fp32
        )
    )
    assert f"wrote {out / 'condition' / 'best.pt'}" in capsys.readouterr().out
    state = load_checkpoint(out / "condition" / "last.pt")
    assert state["epoch"] == 1
    settings = state["config"]["condition"]
    assert (
        settings["epochs"],
        settings["batch_size"],
        settings["seed"],
        settings["precision"],
    ) == (1, 16, 3, "bf16")
    saved = json.loads((out / "config.json").read_text())
    original = json.loads(tiny_config_file.read_text())
    # Only the stage trained changed.
    assert saved["structure"] == original["structure"]
    assert saved["condition"]["epochs"] == 1


def test_rerun_reads_the_saved_configuration(
    tiny_set, tiny_config_file, tmp_path
):
    out = tmp_path / "out"
    args = _args(tiny_set, out, "--epochs", "1")
    main(args + ["--config", str(tiny_config_file)])
    before = (out / "condition" / "last.pt").read_bytes()
    main(args)  # no --config: OUT/config.json, finished, nothing to do
    assert (out / "condition" / "last.pt").read_bytes() == before


def test_bad_json_names_file_and_line(tiny_set, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"split": "shape",\n "condition": {"epochs": 3,}}')
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "--data",
                str(tiny_set),
                "--out",
                str(tmp_path / "out"),
                "--config",
                str(bad),
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "line 2" in err


def test_bad_setting_in_config_file_is_named(
    tiny_set, tiny_config_file, tmp_path, capsys
):
    values = json.loads(tiny_config_file.read_text())
    values["structure"]["optimizer"] = "sgd"
    tiny_config_file.write_text(json.dumps(values))
    with pytest.raises(SystemExit):
        main(
            [
                "--data",
                str(tiny_set),
                "--out",
                str(tmp_path / "out"),
                "--config",
                str(tiny_config_file),
            ]
        )
    assert "optimizer='sgd'" in capsys.readouterr().err


def test_missing_training_set_is_reported(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "--data",
                str(tmp_path / "none.h5"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert exit_info.value.code == 2
    assert "none.h5 not found" in capsys.readouterr().err


def test_unknown_stage_is_refused_by_the_parser(capsys):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "x", "--out", "y", "--stage", "vae"])
    assert "invalid choice: 'vae'" in capsys.readouterr().err


def test_zero_threads_is_refused(tiny_set, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "--data",
                str(tiny_set),
                "--out",
                str(tmp_path / "out"),
                "--threads",
                "0",
            ]
        )
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err


def test_refused_resume_keeps_the_saved_configuration(
    tiny_set, tiny_config_file, tmp_path, capsys
):
    """``--epochs 2`` on a run of 1 epoch is refused and leaves
    OUT/config.json as it was, so that the original command resumes."""
    out = tmp_path / "out"
    main(
        _args(
            tiny_set, out, "--config", str(tiny_config_file), "--epochs", "1"
        )
    )
    saved = (out / "config.json").read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(_args(tiny_set, out, "--epochs", "2"))
    assert exit_info.value.code == 2
    assert "condition.epochs: 1 -> 2" in capsys.readouterr().err
    assert (out / "config.json").read_bytes() == saved
    main(_args(tiny_set, out, "--epochs", "1"))
    assert "wrote" in capsys.readouterr().out


def test_diverging_loss_is_a_one_line_error(
    tiny_set, tiny_config, tmp_path, capsys
):
    config = tiny_config.with_stage_settings(
        ("condition",), lr=1e30, grad_clip=None, warmup_steps=0
    )
    path = tmp_path / "diverging.json"
    path.write_text(json.dumps(config.to_dict()))
    with pytest.raises(SystemExit) as exit_info:
        main(_args(tiny_set, tmp_path / "out", "--config", str(path)))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: stage condition: loss" in err
    assert "lower the learning rate" in err
    assert "Traceback" not in err


def test_output_that_is_a_file_is_a_one_line_error(
    tiny_set, tiny_config_file, tmp_path, capsys
):
    out = tmp_path / "out"
    out.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(_args(tiny_set, out, "--config", str(tiny_config_file)))
    assert exit_info.value.code == 2
    assert f"error: output {out} is not a folder" in capsys.readouterr().err
