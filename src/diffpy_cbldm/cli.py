"""The ``cbldm`` command line.

Each sub-command is a thin layer over a public function of the package;
no physics lives here. Errors in the user's input are reported in one line
(``cbldm: error: ...``) with exit status 2, never as a traceback.
"""

import argparse
import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
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
            "write .res, .fgr, .xyz, .cif and a PNG of the fit."
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

    outdir = _output_folder(args.outdir)
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
    outdir.mkdir(parents=True, exist_ok=True)
    paths = result.save(outdir, Path(args.data).stem)
    print(result.summary())
    for path in paths:
        print(f"wrote {path}")


def _add_solve(sub):
    p = sub.add_parser(
        "solve",
        help="propose candidate clusters for a PDF with CbLDM and refine them",
        description=(
            "Generate N candidate nanoparticles for a measured PDF with a "
            "trained CbLDM (the N of --draws sampled clusters that fit the "
            "data best), refine each (first its outline, atom by atom on "
            "its site arrangement, then with diffpy.srfit) and rank them "
            "by Rw. Writes rankNN.{xyz,cif,res,fgr,png}, best_fits.png and "
            "summary.csv into OUTDIR."
        ),
    )
    p.add_argument("data", help="measured PDF file (.gr, .fgr, ...)")
    p.add_argument("-n", type=int, default=10, help="candidates (10)")
    p.add_argument("-o", "--outdir", default="cbldm-out", help="output folder")
    p.add_argument(
        "--weights", default=None, help="weights name or folder (mmnp-v2)"
    )
    p.add_argument(
        "--element", default=None, help="metal (default: file header)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the sampler's noise (default: a fresh draw each run)",
    )
    p.add_argument(
        "--sampler",
        default=None,
        choices=("cbldm", "ddpm", "ddim", "dpm"),
        help="diffusion sampler (default: the weights' own, cbldm)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="sampler steps (default: the weights' own for the sampler)",
    )
    p.add_argument(
        "--draws",
        type=int,
        default=None,
        help=(
            "clusters sampled, of which the N that fit the data best "
            "before refinement are refined (default 2 N)"
        ),
    )
    p.add_argument(
        "--no-relax",
        action="store_true",
        help=(
            "keep the decoded positions as they are (default: scale each "
            "candidate to the data's first-peak distance, and relax "
            "free-coordinate decoders' candidates in a Morse potential "
            "there)"
        ),
    )
    p.add_argument(
        "--allow-pieces",
        action="store_true",
        help=(
            "keep the decoded clusters as they are, even in pieces "
            "(default: a cluster that falls apart is replaced by one piece "
            "of the best-scored template sites when that fits the data as "
            "well)"
        ),
    )
    p.add_argument(
        "--type-guidance",
        type=float,
        default=None,
        metavar="STRENGTH",
        help=(
            "guide the sampler towards the structure type the weights' "
            "cluster estimator reads in the data (default 1.0; 0: "
            "unguided)"
        ),
    )
    _optional_float(
        p,
        "--count",
        help="the particle's known number of metal atoms (synthesis, mass "
        "spectrometry, microscopy): candidates are sampled about it instead "
        "of about the count the cluster estimator reads in the data (and "
        "--library screens only its clusters within ±2 widths of it)",
    )
    _optional_float(
        p,
        "--count-width",
        help="uncertainty of --count as a standard deviation of ln n "
        "(default 0.05, about ±5 %%)",
    )
    p.add_argument(
        "--no-fragments",
        action="store_true",
        help=(
            "offer no compact fragments (default: for a particle of at "
            "most 16 atoms, every closed-shell piece of 5-16 atoms of "
            "each structure type competes with the sampled candidates)"
        ),
    )
    p.add_argument(
        "--library",
        default=None,
        metavar="DATASET",
        help=(
            "also screen the train split of this training set (.h5) and "
            "pool its best clusters with CbLDM's before refinement"
        ),
    )
    p.add_argument(
        "--library-n",
        type=int,
        default=None,
        help="library candidates pooled (default: -n)",
    )
    _optional_float(p, "--rmin", help="fit range start in Å")
    _optional_float(p, "--rmax", help="fit range end in Å")
    _optional_float(
        p,
        "--qmin",
        help="Qmin of the data's Fourier transform in Å⁻¹ (default: file "
        "header; a bare two-column file needs it)",
    )
    _optional_float(
        p,
        "--qmax",
        help="Qmax of the data's Fourier transform in Å⁻¹ (default: file "
        "header)",
    )
    _optional_float(
        p,
        "--qdamp",
        help="the instrument's Qdamp in Å⁻¹ (default: header); the cluster "
        "estimator reads the atom count better when it is known",
    )
    _optional_float(p, "--qbroad", help="Qbroad in Å⁻¹ (default: header)")
    p.add_argument(
        "--site-moves",
        type=int,
        default=None,
        help=(
            "most atoms moved per candidate on its site arrangement before "
            "the refinement, each only when it lowers Rw enough (default "
            "60; 0 refines the candidates as generated)"
        ),
    )
    _optional_float(
        p,
        "--site-count-window",
        help="let the site refinement also add and remove atoms, changing "
        "each candidate's count by up to this fraction of it (default 0: "
        "the count stays the generator's)",
    )
    p.add_argument(
        "--positions",
        action="store_true",
        help="also refine the atomic positions (restrained)",
    )
    p.add_argument(
        "--top", type=int, default=4, help="fits drawn in best_fits.png"
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_solve)


def _format(value, spec):
    """`value` formatted by `spec`, or an empty cell for None."""
    return "" if value is None else format(value, spec)


SUMMARY_FIELDS = (
    "rank",
    "rw",
    "raw_rw",
    "raw_uiso",
    "raw_delta2",
    "n_atoms",
    "generated_atoms",
    "site_moves",
    "formula",
    "structure_type",
    "zoomscale",
    "adgp_residual",
    "merged_atoms",
    "pieces",
    "joined_sites",
    "generator",
    "candidate",
    "xyz",
)


def _run_solve(args):
    import csv
    import io

    from diffpy_cbldm.arguments import check_count
    from diffpy_cbldm.site_refinement import check_count_window
    from diffpy_cbldm.clusters.bonds import connected_parts
    from diffpy_cbldm.generator import (
        CbLDMGenerator,
        as_pdf_data,
        refine_candidates,
    )
    from diffpy_cbldm.plotting import plot_ranked_fits
    from diffpy_cbldm.refine import Q_SETTINGS

    options = {
        name: getattr(args, name)
        for name in ("rmin", "rmax", *Q_SETTINGS)
        if getattr(args, name) is not None
    }
    if args.library_n is not None:
        check_count("--library-n", args.library_n)
    check_count("--top", args.top)
    if args.site_moves is not None:
        check_count("--site-moves", args.site_moves, least=0)
    check_count_window(args.site_count_window, "--site-count-window")
    outdir = _output_folder(args.outdir)
    gen = CbLDMGenerator.from_pretrained(args.weights)
    data = as_pdf_data(
        args.data, **{name: getattr(args, name) for name in Q_SETTINGS}
    )
    candidates = gen.propose(
        data,
        args.n,
        seed=args.seed,
        sampler=args.sampler,
        steps=args.steps,
        element=args.element,
        relax=False if args.no_relax else None,
        type_guidance=args.type_guidance,
        qdamp=args.qdamp,
        connected=not args.allow_pieces,
        draws=args.draws,
        count=args.count,
        count_width=args.count_width,
        fragments=not args.no_fragments,
    )
    fragments = sum(
        c.info["generator"] == "compact fragment" for c in candidates
    )
    if fragments:
        print(
            f"{fragments} of the {len(candidates)} candidates are compact "
            "fragments (a particle of at most 16 atoms)"
        )
    estimate = candidates[0].info if candidates else {}
    stretch = estimate.get("input_stretch", 1.0)
    if stretch != 1.0:
        print(
            f"model input: r stretched by {stretch:.3f} (the data's "
            "nearest-neighbour peak onto the training bond length)"
        )
    if estimate.get("count_estimate") is not None:
        qdamp = estimate.get("count_estimate_qdamp")
        print(
            f"cluster estimator: about {estimate['count_estimate']:.0f} "
            f"atoms (ln n ± {estimate['count_estimate_width']:.2f}), "
            f"{estimate['type_estimate']} "
            f"(p = {estimate['type_estimate_probability']:.2f}); "
            + (
                "Qdamp unknown (--qdamp sharpens the count)"
                if qdamp is None
                else f"read with Qdamp {qdamp:g} Å⁻¹"
            )
        )
    if estimate.get("count_given") is not None:
        print(
            f"atom count given: {estimate['count_given']:g} (ln n ± "
            f"{estimate['count_given_width']:.2f}); the candidates are "
            "sampled about it"
        )
    if args.library is not None:
        from diffpy_cbldm.library import LibraryGenerator

        library = LibraryGenerator(args.library)
        n_library = args.n if args.library_n is None else args.library_n
        candidates += library.propose(
            data,
            n_library,
            element=args.element,
            count=args.count,
            count_width=args.count_width,
        )
    results = refine_candidates(
        candidates,
        data,
        refine_positions=args.positions,
        progress=not args.no_progress,
        site_moves=args.site_moves,
        site_count_window=args.site_count_window,
        **options,
    )
    rows = []
    for rank, result in enumerate(results, 1):
        stem = f"rank{rank:02d}"
        info = result.atoms.info
        rows.append(
            {
                "rank": rank,
                "rw": f"{result.rw:.4f}",
                "raw_rw": f"{info.get('raw_rw', float('nan')):.4f}",
                "raw_uiso": f"{info.get('rw_uiso', float('nan')):.5f}",
                "raw_delta2": f"{info.get('rw_delta2', float('nan')):.3f}",
                "n_atoms": len(result.atoms),
                "generated_atoms": info.get(
                    "site_start_atoms", len(result.atoms)
                ),
                "site_moves": _format(info.get("site_moves"), "d"),
                "formula": result.atoms.get_chemical_formula(),
                "structure_type": info.get("structure_type") or "",
                "zoomscale": f"{result.values['zoomscale'][0]:.4f}",
                "adgp_residual": _format(info.get("adgp_residual"), ".2e"),
                "merged_atoms": info.get("merged_atoms", 0),
                "pieces": connected_parts(result.atoms.positions)[0],
                "joined_sites": info.get("joined_sites", 0),
                "generator": info.get("generator", ""),
                "candidate": info.get("candidate", ""),
                "xyz": f"{stem}.xyz",
            }
        )
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=SUMMARY_FIELDS)
    writer.writeheader()
    writer.writerows(rows)

    def write(folder):
        for rank, result in enumerate(results, 1):
            result.save(folder, f"rank{rank:02d}")
        plot_ranked_fits(results, folder / "best_fits.png", top=args.top)
        (folder / "summary.csv").write_text(text.getvalue())

    written, removed = _write_run(outdir, write)
    print(f"{args.data}: {len(results)} candidates, weights {gen.name}")
    print(_fit_settings(results[0].settings))
    print(
        f"{'rank':>4} {'Rw':>7} {'raw Rw':>7} {'atoms':>6} {'(gen.)':>6} "
        f"{'zoom':>7} {'formula':<10} generator"
    )
    for row in rows:
        print(
            f"{row['rank']:>4} {row['rw']:>7} {row['raw_rw']:>7} "
            f"{row['n_atoms']:>6} {row['generated_atoms']:>6} "
            f"{row['zoomscale']:>7} {row['formula']:<10} {row['generator']}"
        )
    print(f"wrote {len(written)} files to {outdir}")
    if removed:
        print(
            f"removed {len(removed)} files of an earlier run that this one "
            f"did not replace: {_name_range(removed)}"
        )


# The files of one candidate that `cbldm solve` writes; those of an
# earlier run into the same folder that the new run does not replace
# would mix with its summary.
RANK_FILE = re.compile(r"rank\d+\.(?:res|fgr|xyz|cif|png)")


def _output_folder(path):
    """`path` as a Path, refused before any work when it cannot become
    an output folder (a file, or below one, or not writable)."""
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise NotADirectoryError(
                    f"cannot write into {path}: {folder} is a file"
                )
            if not os.access(folder, os.W_OK):
                raise PermissionError(
                    f"cannot write into {path}: {folder} is not writable"
                )
            break
    return path


def _write_run(outdir, write):
    """Run ``write(folder)`` on a fresh folder inside `outdir`, then move
    its files into `outdir` and remove an earlier run's ``rankNN.*``
    files that were not replaced. On failure nothing is left (and an
    `outdir` made here is removed again).

    Returns
    -------
    written, removed : list of Path
    """
    made = not outdir.exists()
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(
            prefix=".cbldm-", dir=outdir
        ) as staging:
            staging = Path(staging)
            write(staging)
            names = sorted(p.name for p in staging.iterdir())
            for name in names:
                # Checked before the first move, so that none is made.
                if (outdir / name).is_dir():
                    raise IsADirectoryError(
                        f"cannot write {outdir / name}: it is a folder"
                    )
            removed = sorted(
                p
                for p in outdir.iterdir()
                if RANK_FILE.fullmatch(p.name)
                and p.name not in names
                and p.is_file()
            )
            written = []
            for name in names:
                os.replace(staging / name, outdir / name)
                written.append(outdir / name)
            for path in removed:
                path.unlink()
    except BaseException:
        if made:
            with contextlib.suppress(OSError):
                outdir.rmdir()
        raise
    return written, removed


def _name_range(paths):
    """'rank11.* to rank20.*' for the candidates' files."""
    stems = sorted({p.stem for p in paths})
    if len(stems) == 1:
        return f"{stems[0]}.*"
    return f"{stems[0]}.* to {stems[-1]}.*"


def _fit_settings(settings):
    """One line: the fit range and Q settings and where each came from
    (the same for every candidate of one data file)."""
    (rmin, _), (rmax, _) = settings["rmin"], settings["rmax"]
    q = [
        f"{name.capitalize()} {value:g} ({source})"
        for name, (value, source) in settings.items()
        if name.startswith("q")
    ]
    return f"fit r {rmin:g}-{rmax:g} Å; " + ", ".join(q) + " (Å⁻¹)"


def _add_evaluate(sub):
    p = sub.add_parser(
        "evaluate",
        help="evaluate CbLDM (and library screening) on held-out shapes",
        description=(
            "Solve the PDFs of the test split of a training set (held-out "
            "shapes) with CbLDM and with library screening of its training "
            "split; print medians of raw and refined Rw, atom-count and "
            "structure-type success per type and size bin; with --shared, "
            "also the DiffPy reference and experimental PDFs."
        ),
    )
    p.add_argument("--data", required=True, help="training set (.h5)")
    p.add_argument("--weights", default=None, help="weights name or folder")
    p.add_argument("--per-type", type=int, default=10)
    p.add_argument("-n", type=int, default=10, help="candidates per PDF")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-library", action="store_true")
    p.add_argument(
        "--noiseless",
        action="store_true",
        help="give the test PDFs without their stored noise (the floor of "
        "the refined Rw, the table's noise Rw column, drops to 0); "
        "reference and experimental PDFs are skipped",
    )
    p.add_argument(
        "--count-given",
        action="store_true",
        help="tell CbLDM each test case's true atom count, as a user who "
        "knows it would (with --no-library); reference and experimental "
        "PDFs are skipped",
    )
    p.add_argument(
        "--shared", default=None, help="shared/data folder (optional)"
    )
    p.add_argument("-o", "--out", default=None, help="results JSON")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args):
    from diffpy_cbldm.evaluation import run_evaluation

    run_evaluation(
        args.data,
        weights=args.weights,
        per_type=args.per_type,
        n=args.n,
        seed=args.seed,
        library=not args.no_library,
        noiseless=args.noiseless,
        count_given=args.count_given,
        shared=args.shared,
        out=args.out,
    )


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
        "--draws",
        type=int,
        default=None,
        help="PDFs per structure, each with its own acquisition settings "
        "and noise (default: 2)",
    )
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
    if args.draws is not None:
        options["draws_per_structure"] = args.draws
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
    _add_solve(sub)
    _add_evaluate(sub)
    _add_dataset(sub)
    _add_train(sub)
    return parser


def _log_warning(message, category, filename, lineno, file=None, line=None):
    logging.getLogger("diffpy_cbldm").warning("%s", message)


def _message(exc):
    """An exception's text for one line: the system's own words and the
    file for an OSError raised by the system (its args are an errno and
    a text), the message otherwise (a KeyError's without quotes)."""
    if isinstance(exc, OSError) and exc.strerror is not None:
        where = exc.filename if exc.filename is not None else ""
        return f"{where}: {exc.strerror}" if where != "" else exc.strerror
    return exc.args[0] if exc.args else str(exc)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        with warnings.catch_warnings():
            # Python warnings (e.g. a PDF file that gives no Qmin) as one
            # log line each, like the package's own messages.
            warnings.showwarning = _log_warning
            args.func(args)
    except (
        ValueError,
        OSError,
        ImportError,
        KeyError,
        FloatingPointError,
    ) as exc:
        print(f"cbldm: error: {_message(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
