"""The ``cbldm`` command line.

Each sub-command is a thin layer over a public function of the package;
no physics lives here. Errors in the user's input are reported in one line
(``cbldm: error: ...``) with exit status 2, never as a traceback.
"""

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["main"]

logger = logging.getLogger("diffpy_cbldm")


def read_structure(spec):
    """An ``ase.Atoms`` from a structure file or a cluster spec.

    Parameters
    ----------
    spec : str
        A path to any file ase.io reads (.xyz, .cif, .pdb, ...) or a
        cluster spec understood by
        :func:`diffpy_cbldm.clusters.build.build_cluster`, e.g.
        ``"octahedral:Pt:length=12,cutoff=4"``.
    """
    path = Path(spec)
    if path.exists():
        import ase.io

        try:
            return ase.io.read(path)
        except Exception as exc:
            raise ValueError(f"cannot read structure file {path}: {exc}")
    if ":" not in spec:
        raise FileNotFoundError(
            f"structure {spec!r} is neither an existing file nor a cluster "
            "spec such as 'octahedral:Pt:length=12,cutoff=4'"
        )
    from diffpy_cbldm.clusters.build import build_cluster

    return build_cluster(spec)


def _optional_float(parser, *names, help):
    parser.add_argument(*names, type=float, default=None, help=help)


def _add_refine(sub):
    p = sub.add_parser(
        "refine",
        help="refine a cluster against a measured PDF with diffpy.srfit",
        description=(
            "Refine scale, zoomscale, Uiso per element and delta2 (and "
            "optionally the positions) of a cluster against a PDF file; "
            "write .res, .fgr, .xyz and a PNG of the fit."
        ),
    )
    p.add_argument("data", help="measured PDF file (.gr, .fgr, ...)")
    p.add_argument(
        "structure",
        help="structure file read by ASE, or a cluster spec such as "
        "'octahedral:Pt:length=12,cutoff=4'",
    )
    p.add_argument("-o", "--outdir", default="cbldm-out", help="output folder")
    _optional_float(p, "--rmin", help="fit range start in Å")
    _optional_float(p, "--rmax", help="fit range end in Å")
    _optional_float(p, "--qmin", help="Qmin in Å⁻¹ (default: file header)")
    _optional_float(p, "--qmax", help="Qmax in Å⁻¹ (default: file header)")
    _optional_float(p, "--qdamp", help="Qdamp in Å⁻¹ (default: header)")
    _optional_float(p, "--qbroad", help="Qbroad in Å⁻¹ (default: header)")
    p.add_argument(
        "--positions",
        action="store_true",
        help="also refine the atomic positions (restrained), last stage",
    )
    p.add_argument(
        "--backend",
        default="torch",
        choices=("torch", "srreal"),
        help="PDF engine: this package's (default) or diffpy.srreal's",
    )
    p.set_defaults(func=_run_refine)


def _run_refine(args):
    from diffpy_cbldm.refine import refine_cluster

    atoms = read_structure(args.structure)
    options = {
        name: getattr(args, name)
        for name in ("rmin", "rmax", "qmin", "qmax", "qdamp", "qbroad")
        if getattr(args, name) is not None
    }
    result = refine_cluster(
        atoms,
        args.data,
        refine_positions=args.positions,
        backend=args.backend,
        **options,
    )
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = result.save(outdir, Path(args.data).stem)
    print(result.summary())
    for path in paths:
        print(f"wrote {path}")


def _add_dataset(sub):
    p = sub.add_parser("dataset", help="build or inspect a training set")
    dsub = p.add_subparsers(dest="dataset_command", required=True)
    b = dsub.add_parser(
        "build", help="build the (structure, PDF) training set as HDF5"
    )
    b.add_argument("--out", required=True, help="output .h5 file")
    b.add_argument(
        "--types",
        nargs="+",
        default=None,
        help="structure types (default: all seven)",
    )
    b.add_argument("--max-atoms", type=int, default=256)
    b.add_argument("--min-atoms", type=int, default=5)
    b.add_argument(
        "--workers", type=int, default=None, help="default: all cores"
    )
    b.add_argument("--seed", type=int, default=42)
    b.add_argument(
        "--overwrite", action="store_true", help="replace an existing file"
    )
    b.set_defaults(func=_run_dataset_build)
    i = dsub.add_parser("info", help="counts and settings of a dataset")
    i.add_argument("path", help="dataset .h5 file")
    i.set_defaults(func=_run_dataset_info)


def _run_dataset_build(args):
    from diffpy_cbldm.dataset.build import build_dataset

    options = {}
    if args.types is not None:
        options["types"] = tuple(args.types)
    path = build_dataset(
        args.out,
        max_atoms=args.max_atoms,
        min_atoms=args.min_atoms,
        workers=args.workers,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=True,
        **options,
    )
    print(f"wrote {path}")


def _run_dataset_info(args):
    from diffpy_cbldm.dataset.store import open_dataset

    with open_dataset(args.path) as dataset:
        print(dataset.summary())


def _add_train(sub):
    from diffpy_cbldm.training.cli import add_train_arguments

    p = sub.add_parser(
        "train",
        help="train CbLDM: condition VAE, structure VAE, latent diffusion",
    )
    add_train_arguments(p)
    p.set_defaults(func=_run_train)


def _run_train(args):
    from diffpy_cbldm.training.cli import run_train

    print(f"wrote {run_train(args)}")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="cbldm",
        description="Nanostructure solution from PDF data (diffpy-cbldm).",
    )
    from diffpy_cbldm import __version__

    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress details"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_refine(sub)
    _add_dataset(sub)
    _add_train(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        args.func(args)
    except (ValueError, OSError, ImportError, KeyError) as exc:
        message = exc.args[0] if exc.args else exc
        print(f"cbldm: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
