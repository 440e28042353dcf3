"""Command-line glue of ``cbldm train``.

:func:`add_train_arguments` declares the options on a parser and
:func:`run_train` runs :func:`diffpy_cbldm.training.train` with them.
``python -m diffpy_cbldm.training.cli`` is the same command on its own,
which ``torchrun`` can launch::

    torchrun --nproc_per_node=2 -m diffpy_cbldm.training.cli \\
        --data set.h5 --stage all --out run
"""

import argparse
import json
import logging
import os
from pathlib import Path

__all__ = ["add_train_arguments", "main", "run_train"]


def add_train_arguments(parser):
    """Add the options of ``cbldm train`` to an argparse parser."""
    from diffpy_cbldm.training.stages import TRAIN_STAGES

    parser.add_argument(
        "--data", required=True, help="training set (.h5, cbldm dataset build)"
    )
    parser.add_argument(
        "--stage",
        default="all",
        choices=TRAIN_STAGES,
        help="stage to train: condition (1), structure (2), diffusion (3), "
        "estimator (4, the cluster estimator) or all four in order "
        "(default)",
    )
    parser.add_argument(
        "--out", required=True, help="output folder of the run"
    )
    parser.add_argument(
        "--config",
        default=None,
        help="run configuration as JSON (the layout of OUT/config.json); "
        "default: OUT/config.json if present, else the package defaults",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of each stage trained",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="structures per step and process",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of each stage trained"
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=None,
        help="precision of each stage trained (default auto: bf16 "
        "autocast where the device has native bfloat16, a GPU or a CPU "
        "with avx512_bf16 or amx_bf16, else fp32)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="default: cuda when available",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads per process (default: torch's); on a "
        "busy machine 1 can be much faster",
    )
    parser.add_argument(
        "--base-weights",
        default=None,
        help="with --stage estimator only: export the trained cluster "
        "estimator onto a copy of this weights set (a registered name such "
        "as mmnp-v2, or a folder), whose networks of stages 1-3 it keeps",
    )
    parser.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="start the stage(s) afresh instead of resuming last.pt",
    )
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bars",
    )


def _read_config(path):
    from diffpy_cbldm.training.config import RunConfig

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"configuration file {path} not found")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: not valid JSON (line {exc.lineno}, column "
            f"{exc.colno}: {exc.msg})"
        ) from None
    try:
        return RunConfig.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def run_train(args):
    """Run :func:`~diffpy_cbldm.training.train` with parsed arguments.

    The configuration is ``--config``, else ``OUT/config.json``, else the
    defaults for the training set; ``--epochs``, ``--batch-size``,
    ``--seed`` and ``--precision`` then replace those settings of the
    stage(s) trained.

    Returns
    -------
    pathlib.Path
        What :func:`train` returns.
    """
    from diffpy_cbldm.training.config import STAGES
    from diffpy_cbldm.training.stages import (
        CONFIG_FILE,
        default_config,
        train,
    )

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    saved = Path(args.out) / CONFIG_FILE
    if args.config is not None:
        config = _read_config(args.config)
    elif saved.is_file():
        config = _read_config(saved)
    else:
        data = Path(args.data)
        if not data.is_file():
            raise FileNotFoundError(f"training set {data} not found")
        config = default_config(data)
    changes = {
        name: value
        for name, value in (
            ("epochs", args.epochs),
            ("batch_size", args.batch_size),
            ("seed", args.seed),
            ("precision", args.precision),
        )
        if value is not None
    }
    stages = STAGES if args.stage == "all" else (args.stage,)
    config = config.with_stage_settings(stages, **changes)
    return train(
        args.stage,
        args.data,
        args.out,
        config,
        resume=args.resume,
        progress=args.progress,
        device=args.device,
        base_weights=args.base_weights,
    )


def main(argv=None):
    """``python -m diffpy_cbldm.training.cli``: ``cbldm train`` alone."""
    parser = argparse.ArgumentParser(
        prog="python -m diffpy_cbldm.training.cli",
        description="Train CbLDM (the three stages of the paper and the "
        "cluster estimator).",
    )
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    main_process = os.environ.get("RANK", "0") == "0"
    logging.basicConfig(
        level=logging.INFO if main_process else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        path = run_train(args)
    except (ValueError, OSError, ImportError, FloatingPointError) as exc:
        # OSError: a missing file, an --out that is a file
        # (NotADirectoryError), a full disk; FloatingPointError: a
        # diverging loss.
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    if main_process:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
