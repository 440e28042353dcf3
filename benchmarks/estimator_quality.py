"""Benchmark: the cluster estimator, and what its count and type do to
the candidates.

Two parts, on the **validation** split (the test split is kept for
``benchmarks/evaluate.py``):

1. The estimator alone, on every validation PDF (all structures, all
   stored draws), mapped as ``CbLDMGenerator.model_input`` maps a
   measurement, read twice: told each PDF's Qdamp, and not told it.
   Per type and mode, per extent (whether the particle's largest
   interatomic distance fits in the PDF's r-range,
   :func:`diffpy_cbldm.evaluation.extent`) and per width of the
   estimate (up to or above
   :data:`diffpy_cbldm.generator.UNCERTAIN_COUNT_WIDTH` in ln n): share
   of counts within 10 % (``exp`` of its mean of ln n), median |error of
   ln n|, median width, share of right types and the types it reads.
2. ``propose`` + ``refine_candidates`` on ``--per-type`` validation
   PDFs per type (first draw, its own Q settings), ``-n`` candidates,
   for each type-guidance strength of ``--guidance``: share of sampled
   candidates of the right type, and of the top-ranked refined one, its
   count within 10 %, median refined Rw, median best-of-n raw Rw and
   median propose time. The cases carry their Qdamp, as a calibrated
   measurement does.

Run from the repository root (one torch thread)::

    python benchmarks/estimator_quality.py --data data/mmnp-v2.h5

Writes ``benchmarks/results/estimator_quality.json``.
"""

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "estimator_quality.json"


def estimator_alone(gen, dataset):
    """Part 1: the estimator on every validation PDF, told its Qdamp
    (``"qdamp_known"``) and not (``"qdamp_unknown"``)."""
    import torch

    from diffpy_cbldm.conventions import stretch_factor
    from diffpy_cbldm.dataset.store import SETTINGS_COLUMNS
    from diffpy_cbldm.evaluation import diameter, extent
    from diffpy_cbldm.training.data import load_split, structure_type_codes

    val = load_split(dataset, "val", "shape", gen.conventions)
    truth_type = np.repeat(
        structure_type_codes(dataset, val.rows).numpy(), val.n_draws
    )
    truth_n = np.repeat(val.natoms.numpy(), val.n_draws)
    r = gen.conventions.rgrid
    positions = dataset.array("positions")[val.rows]
    extents = np.repeat(
        [
            extent(diameter(p[:k]), float(r[-1]))
            for p, k in zip(positions, val.natoms.numpy())
        ],
        val.n_draws,
    )
    pdfs = val.pdf.reshape(-1, len(r)).numpy()
    x = torch.as_tensor(
        np.stack([gen.model_input((r, g)) for g in pdfs]), dtype=torch.float32
    )
    # The network reads Qdamp in the stretched input's frame, as propose
    # gives it.
    stretch = np.array([stretch_factor(r, g, gen.conventions) for g in pdfs])
    settings = dataset.array("pdf_settings")[val.rows]
    qdamp = settings[..., SETTINGS_COLUMNS.index("qdamp")].reshape(-1)
    qdamp = qdamp / stretch
    net = gen.modules["cluster_estimator"]
    modes = {"qdamp_unknown": None}
    if net.reads_qdamp:
        modes["qdamp_known"] = torch.as_tensor(qdamp, dtype=torch.float32)
    out = {}
    for mode, q in modes.items():
        with torch.no_grad():
            mean, logvar, logits = net(x, q)
        out[mode] = _scores(
            np.exp(mean.numpy()),
            logits.argmax(dim=-1).numpy(),
            truth_n,
            truth_type,
            extents,
            np.exp(0.5 * logvar.numpy()),
        )
    return out


def _scores(estimate, kind, truth_n, truth_type, extents, width):
    from diffpy_cbldm.clusters.build import STRUCTURE_TYPES
    from diffpy_cbldm.evaluation import COUNT_TOLERANCE, EXTENTS
    from diffpy_cbldm.generator import UNCERTAIN_COUNT_WIDTH as wide

    groups = {
        name: truth_type == STRUCTURE_TYPES.index(name)
        for name in STRUCTURE_TYPES
    }
    groups.update({label: extents == label for label in EXTENTS})
    groups[f"width <= {wide}"] = width <= wide
    groups[f"width > {wide}"] = width > wide
    groups["all"] = np.ones(len(kind), bool)
    out = {}
    for name, keep in groups.items():
        out[name] = {
            "pdfs": int(keep.sum()),
            "count_within_10pct": float(
                np.mean(
                    np.abs(estimate[keep] / truth_n[keep] - 1)
                    <= COUNT_TOLERANCE
                )
            ),
            "median_abs_log_error": float(
                np.median(np.abs(np.log(estimate[keep] / truth_n[keep])))
            ),
            "type_correct": float(np.mean(kind[keep] == truth_type[keep])),
            "median_width": float(np.median(width[keep])),
            "read_as": {
                STRUCTURE_TYPES[k]: int(np.sum(kind[keep] == k))
                for k in np.unique(kind[keep])
            },
        }
    return out


def with_guidance(gen, dataset, rows, n, seed, strengths):
    """Part 2: propose and refine at each guidance strength."""
    from diffpy_cbldm.evaluation import case_data, count_right
    from diffpy_cbldm.generator import refine_candidates

    table = {}
    for strength in strengths:
        records = []
        for row in rows:
            data, sample = case_data(dataset, int(row))
            truth = len(sample.positions)
            t0 = time.perf_counter()
            cands = gen.propose(data, n, seed=seed, type_guidance=strength)
            t_propose = time.perf_counter() - t0
            top = refine_candidates(cands, data, progress=False)[0]
            records.append(
                {
                    "row": int(row),
                    "type": sample.structure_type,
                    "natoms": truth,
                    "type_estimate": cands[0].info["type_estimate"],
                    "count_estimate": cands[0].info["count_estimate"],
                    "right_type_share": float(
                        np.mean(
                            [
                                c.info["structure_type"]
                                == sample.structure_type
                                for c in cands
                            ]
                        )
                    ),
                    "raw_rw": float(min(c.info["rw"] for c in cands)),
                    "refined_rw": float(top.rw),
                    "top_natoms": len(top.atoms),
                    "top_type": top.atoms.info["structure_type"],
                    "propose_s": t_propose,
                }
            )
        table[str(strength)] = {
            "cases": len(records),
            "right_type_share": float(
                np.mean([r["right_type_share"] for r in records])
            ),
            "top_type_correct": float(
                np.mean([r["top_type"] == r["type"] for r in records])
            ),
            "top_count_within_10pct": float(
                np.mean(
                    [
                        count_right(r["top_natoms"], r["natoms"])
                        for r in records
                    ]
                )
            ),
            "median_refined_rw": float(
                np.median([r["refined_rw"] for r in records])
            ),
            "median_raw_rw": float(np.median([r["raw_rw"] for r in records])),
            "median_propose_s": float(
                np.median([r["propose_s"] for r in records])
            ),
            "records": records,
        }
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/mmnp-v2.h5")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--per-type", type=int, default=3)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--guidance", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0]
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch

    from diffpy_cbldm.atomic import write_json
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.evaluation import select_cases
    from diffpy_cbldm.generator import CbLDMGenerator

    torch.set_num_threads(args.threads)
    logging.getLogger("diffpy_cbldm").setLevel(logging.ERROR)
    gen = CbLDMGenerator.from_pretrained(args.weights)
    if "cluster_estimator" not in gen.modules:
        raise SystemExit(f"weights {gen.name} have no cluster estimator")
    started = time.perf_counter()
    with open_dataset(args.data) as ds:
        alone = estimator_alone(gen, ds)
        for mode, scores in alone.items():
            print(f"estimator on every validation PDF, {mode}")
            print(
                f"{'group':<14} {'PDFs':>5} {'N ±10 %':>8} {'width':>6} "
                f"{'type ok':>8}"
            )
            for name, row in scores.items():
                print(
                    f"{name:<14} {row['pdfs']:>5} "
                    f"{row['count_within_10pct']:>8.2f} "
                    f"{row['median_width']:>6.3f} "
                    f"{row['type_correct']:>8.2f}"
                )
        rows = select_cases(ds, "val", args.per_type, seed=args.seed)
        table = with_guidance(gen, ds, rows, args.n, args.seed, args.guidance)
    print(f"\npropose + refine, {len(rows)} validation PDFs, n = {args.n}")
    print(
        f"{'guidance':>8} {'right-type':>10} {'top type':>8} {'top N':>6} "
        f"{'ref. Rw':>8} {'raw Rw':>7} {'prop s':>7}"
    )
    for strength, row in table.items():
        print(
            f"{strength:>8} {row['right_type_share']:>10.2f} "
            f"{row['top_type_correct']:>8.2f} "
            f"{row['top_count_within_10pct']:>6.2f} "
            f"{row['median_refined_rw']:>8.3f} {row['median_raw_rw']:>7.3f} "
            f"{row['median_propose_s']:>7.2f}"
        )
    path = Path(args.out)
    write_json(
        path,
        {
            "args": vars(args),
            "weights": gen.name,
            "estimator_alone": alone,
            "guidance": table,
            "wall_s": time.perf_counter() - started,
            "load_average": list(os.getloadavg()),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
