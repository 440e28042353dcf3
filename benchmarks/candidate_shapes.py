"""Benchmark: the shape of CbLDM's candidates against the true cluster's.

For the cases :mod:`benchmarks/evaluate.py` uses (``select_cases`` on the
test split, first stored PDF draw, the same ``propose`` call and seed),
the principal extents of the true cluster and of each of the n proposed
candidates (:func:`diffpy_cbldm.evaluation.principal_extents`: the span of
the atoms along each principal axis, longest first). Per case: the truth's
extents and the median over the candidates of each; medians of those per
extent group (whether the particle's largest interatomic distance fits in
the PDF's r-range, :func:`diffpy_cbldm.evaluation.extent`). No refinement:
it changes a candidate's size by its zoom factor (within a few per cent),
not its shape.

Whether each cluster is one piece: :func:`diffpy_cbldm.clusters.bonds
.connected_parts` (atoms bonded within 1.3 times the median
nearest-neighbour distance): per group, the share of candidates in one
piece, the share with more than 10 % of their atoms outside their
largest part, and the same for the true clusters; and the share of
candidates that ``propose`` joined into one piece (``joined_sites`` > 0;
``--allow-pieces`` measures the clusters as decoded).

Beside them, to tell the decoder from the sampler, the structure VAE's
decoded positions (template sites, the true atom count) of two latents:
the posterior mean ``q(z | L, c)`` of the true cluster (can the decoder
represent the shape?) and the conditional-prior mean ``p(z | c)`` (the
cbldm sampler's starting point, blended in at step t1).

Run from the repository root::

    python benchmarks/candidate_shapes.py --data data/mmnp-v2.h5

Prints a table and writes ``benchmarks/results/candidate_shapes.json``.
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "candidate_shapes.json"


def _decoded_extents(gen, data, positions):
    """Principal extents of the structure VAE's decoded positions for the
    posterior and the conditional-prior means (true atom count)."""
    import torch

    from diffpy_cbldm.clusters.laplacian import laplacian
    from diffpy_cbldm.evaluation import principal_extents

    cvae = gen.modules["condition_vae"]
    svae = gen.modules["structure_vae"]
    n = len(positions)
    L = torch.as_tensor(laplacian(positions, gen.conventions.sigma))[None]
    g = torch.as_tensor(gen.model_input(data))[None]
    out = {}
    with torch.no_grad():
        z_c = cvae.condition(g.float())
        latents = {
            "posterior_mean": svae.encode(L.float(), z_c)[0],
            "prior_mean": svae.prior(z_c)[0],
        }
        for key, z in latents.items():
            x = svae.decode_positions(z, torch.tensor([n]))[0, :n]
            out[key] = principal_extents(x.double().numpy()).tolist()
    return out


def _pieces(group):
    """Shares of candidates (and of true clusters) in one piece and with
    more than 10 % of their atoms outside their largest part."""
    cands = [
        (p, n)
        for c in group
        for p, n in zip(c["candidate_parts"], c["candidate_sizes"])
    ]
    truth = [(c["truth_parts"], c["natoms"]) for c in group]
    out = {}
    for key, items in (("candidates", cands), ("truth", truth)):
        out[f"{key}_one_piece"] = float(
            np.mean([parts == 1 for (parts, _), _ in items])
        )
        out[f"{key}_over_10pct_outside"] = float(
            np.mean([stray > 0.1 * n for (_, stray), n in items])
        )
    out["candidates_joined"] = float(
        np.mean([j > 0 for c in group for j in c["candidate_joined_sites"]])
    )
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/mmnp-v2.h5")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--per-type", type=int, default=5)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--allow-pieces",
        action="store_true",
        help="the candidates as decoded (propose(connected=False))",
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch

    from diffpy_cbldm.atomic import write_json
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.clusters.bonds import connected_parts
    from diffpy_cbldm.evaluation import (
        EXTENTS,
        case_data,
        diameter,
        extent,
        principal_extents,
        select_cases,
    )
    from diffpy_cbldm.generator import CbLDMGenerator

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    gen = CbLDMGenerator.from_pretrained(args.weights, "cpu")
    cases = []
    with open_dataset(args.data) as ds:
        rows = select_cases(ds, "test", args.per_type, seed=args.seed)
        for row in rows:
            data, sample = case_data(ds, int(row))
            cands = gen.propose(
                data,
                args.n,
                seed=args.seed,
                connected=not args.allow_pieces,
            )
            shapes = np.array([principal_extents(a.positions) for a in cands])
            pieces = [connected_parts(a.positions) for a in cands]
            truth_pieces = connected_parts(sample.positions)
            decoded = _decoded_extents(gen, data, sample.positions)
            cases.append(
                {
                    "row": int(row),
                    "type": sample.structure_type,
                    "natoms": len(sample.positions),
                    "extent": extent(
                        diameter(sample.positions), float(data.r[-1])
                    ),
                    "truth": principal_extents(sample.positions).tolist(),
                    "candidates": np.median(shapes, axis=0).tolist(),
                    "candidate_natoms": float(
                        np.median([len(a) for a in cands])
                    ),
                    "truth_parts": list(truth_pieces),
                    "candidate_parts": [list(p) for p in pieces],
                    "candidate_sizes": [len(a) for a in cands],
                    "candidate_joined_sites": [
                        a.info["joined_sites"] for a in cands
                    ],
                    **decoded,
                }
            )

    summary = {}
    for label in EXTENTS + ("all",):
        group = [c for c in cases if label in ("all", c["extent"])]
        if group:
            summary[label] = {
                "cases": len(group),
                "truth": np.median([c["truth"] for c in group], 0).tolist(),
                **{
                    key: np.median([c[key] for c in group], 0).tolist()
                    for key in ("candidates", "posterior_mean", "prior_mean")
                },
                **_pieces(group),
            }

    def fmt(e):
        return " x ".join(f"{v:5.1f}" for v in e)

    print(
        f"{'type':<12} {'N':>4} {'extent':<15} {'truth (Å)':<21} "
        f"{'candidates, median (Å)':<23} {'N cand.':>7}"
    )
    for c in cases:
        print(
            f"{c['type']:<12} {c['natoms']:>4} {c['extent']:<15} "
            f"{fmt(c['truth']):<21} {fmt(c['candidates']):<23} "
            f"{c['candidate_natoms']:>7.0f}"
        )
    print("\nmedians of the cases")
    for label, s in summary.items():
        print(f"{label} ({s['cases']} cases)")
        for key in ("truth", "candidates", "posterior_mean", "prior_mean"):
            print(f"    {key:<15} {fmt(s[key])}")
        for key in ("truth", "candidates"):
            print(
                f"    {key:<15} one piece {s[f'{key}_one_piece']:.2f}, "
                "more than 10 % outside the largest part "
                f"{s[f'{key}_over_10pct_outside']:.2f}"
            )
        joined = s["candidates_joined"]
        print(f"    candidates joined into one piece {joined:.2f}")
    result = {
        "command": "python benchmarks/candidate_shapes.py "
        f"--data {args.data} --per-type {args.per_type} -n {args.n} "
        f"--seed {args.seed}"
        + (" --allow-pieces" if args.allow_pieces else ""),
        "weights": gen.name,
        "seconds": time.perf_counter() - started,
        "load_average": os.getloadavg(),
        "summary": summary,
        "cases": cases,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
