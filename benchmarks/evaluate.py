"""Benchmark: CbLDM against library screening, as in the paper's Tables 2-3.

Three parts, each for CbLDM (trained weights) and for
:class:`~diffpy_cbldm.library.LibraryGenerator` (the training split of
the same set, one metal per shape) on the same cases:

1. **Held-out shapes**: up to ``--per-type`` structures per type from the
   shape-held-out test split of the training set (drawn across the three
   size bins), each PDF (first acquisition draw, its own Q settings and
   noise) given as a measurement; ``-n`` candidates each. Per type and
   size bin: median raw Rw (best of n, free scale), median refined top-1
   Rw, share of cases whose top-1 atom count is within 10 %, share whose
   top-1 structure type (nearest library shape,
   :class:`~diffpy_cbldm.evaluation.StructureTyper`) is right, median
   propose / solve times, and the median Rw of the PDFs' own noise (the
   floor of the refined Rw). ``--noiseless`` gives the PDFs without their
   stored noise (and skips parts 2 and 3).
2. **DiffPy reference**: the six PDFs of ``shared/data/diffpy-reference``
   with their known clusters: type and atom count of the top-ranked
   refined candidate.
3. **Experimental**: the two measured PDFs of ``shared/data/experimental``:
   the ranked candidates with their refined Rw.

Run from the repository root (one torch thread is fastest on a busy
2-core machine)::

    python benchmarks/evaluate.py --data data/mmnp-v2.h5 [--weights W]

Writes ``benchmarks/results/evaluate.json``. On two cores, the two
generators can run side by side and be joined afterwards::

    python benchmarks/evaluate.py --no-library --out cbldm.json &
    python benchmarks/evaluate.py --no-cbldm --out library.json
    python benchmarks/evaluate.py --merge cbldm.json library.json
"""

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "evaluate.json"
SHARED = ROOT.parent / "shared" / "data"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/mmnp-v2.h5")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--per-type", type=int, default=10)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-library", action="store_true")
    parser.add_argument("--no-cbldm", action="store_true")
    parser.add_argument(
        "--noiseless",
        action="store_true",
        help="test PDFs without their stored noise (no reference and "
        "experimental part)",
    )
    parser.add_argument(
        "--count-given",
        action="store_true",
        help="tell CbLDM each test case's true atom count (with "
        "--no-library; no reference and experimental part)",
    )
    parser.add_argument(
        "--site-moves",
        type=int,
        default=None,
        help="most site-refinement moves per candidate (default: the "
        "package's; 0: none)",
    )
    parser.add_argument(
        "--site-count-window",
        type=float,
        default=None,
        help="let the site refinement change each count by this fraction "
        "(default: the package's, 0; inf: unbounded)",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="join earlier results (one per generator) into --out",
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    if args.merge:
        import json

        from diffpy_cbldm.atomic import write_json
        from diffpy_cbldm.evaluation import merge_results

        merged = merge_results(
            json.loads(Path(p).read_text()) for p in args.merge
        )
        merged["command"] = (
            "python benchmarks/evaluate.py --merge " + " ".join(args.merge)
        )
        write_json(args.out, merged)
        print(f"wrote {args.out}")
        return

    import torch

    from diffpy_cbldm.evaluation import run_evaluation

    torch.set_num_threads(args.threads)
    run_evaluation(
        args.data,
        weights=args.weights,
        per_type=args.per_type,
        n=args.n,
        seed=args.seed,
        library=not args.no_library,
        cbldm=not args.no_cbldm,
        noiseless=args.noiseless,
        count_given=args.count_given,
        shared=SHARED,
        out=args.out,
        site_moves=args.site_moves,
        site_count_window=args.site_count_window,
    )


if __name__ == "__main__":
    main()
