"""Benchmark: could the ranking pick the right atom count more often?

``solve`` ranks its refined candidates by Rw alone. For a particle longer
than the r-range, candidates of several counts refine to nearly the same
Rw (docs/benchmarks/evaluate.rst), and the top one's count is then
close to a coin toss among them, while the cluster estimator's reading
(its mean and width of ln n) is thrown away after sampling. This
solves cases of a split as ``benchmarks/evaluate.py`` does (same case
selection, ``propose(n)`` then ``refine_candidates``), keeps every
refined candidate's count and Rw with the estimator's reading, and
compares ranking rules on them, without solving again:

* ``rw``: lowest Rw (what ``solve`` does);
* ``posterior k``: lowest ``k * N_ind * ln(Rw^2) + ((ln n - mu) /
  sigma)^2``, a profile likelihood of the Rw with ``k * N_ind``
  independent points (``N_ind = (rmax - rmin) Qmax / pi``, the
  Shannon count of the fit range) and the estimator's Gaussian in
  ln n as a prior; small k trusts the estimator, large k the Rw;
* ``ceiling``: a candidate of the right count exists among the refined
  ones (what any rule could reach at best).

``--strata K`` draws the candidates instead in K groups of given count
at the quantiles of the estimator's Gaussian, to see whether a wider
spread of counts lets the Rw find the right one.

Choose a rule on the validation split, then report it once on the test
split. (On mmnp-v2's validation split neither the posterior ranking nor
the strata beat Rw ranking of ``propose``'s own candidates:
docs/benchmarks/evaluate.rst.)

Run from the repository root::

    python benchmarks/count_ranking.py --split val \\
        --out benchmarks/results/count_ranking_val.json

Writes the JSON given by ``--out``.
"""

import argparse
import logging
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KS = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0)


def propose_in_strata(gen, data, n, seed, strata):
    """`n` candidates drawn in `strata` groups whose counts are given at
    the quantiles (i + 1/2) / strata of the estimator's Gaussian in ln n,
    n / strata each: the estimator's spread sampled on purpose instead
    of about its mean."""
    from scipy.stats import norm

    from diffpy_cbldm.generator import MIN_ATOMS

    est = gen.estimate(data)
    mu = np.log(est["count_estimate"])
    width = est["count_estimate_width"]
    top = gen.conventions.max_atoms
    cands = []
    for i in range(strata):
        z = norm.ppf((i + 0.5) / strata)
        count = float(np.clip(np.exp(mu + z * width), MIN_ATOMS, top))
        cands += gen.propose(
            data, n // strata, seed=seed + i, count=count, count_width=0.05
        )
    return cands


def solve_cases(gen, dataset, rows, n, seed, noiseless, strata=1):
    """One record per row: the truth, the estimator's reading and every
    refined candidate's count, Rw and raw Rw, best first."""
    from diffpy_cbldm.evaluation import case_data, diameter, extent
    from diffpy_cbldm.generator import refine_candidates

    records = []
    for row in rows:
        data, sample = case_data(dataset, int(row), noiseless)
        if strata > 1:
            cands = propose_in_strata(gen, data, n, seed, strata)
        else:
            cands = gen.propose(data, n, seed=seed)
        results = refine_candidates(cands, data, progress=False)
        info = cands[0].info
        records.append(
            {
                "row": int(row),
                "type": sample.structure_type,
                "natoms": len(sample.positions),
                "extent": extent(
                    diameter(sample.positions), float(data.r[-1])
                ),
                "fit_range": [float(results[0].r[0]), float(results[0].r[-1])],
                "qmax": float(results[0].settings["qmax"][0]),
                "count_estimate": info["count_estimate"],
                "count_estimate_width": info["count_estimate_width"],
                "candidates": [
                    {
                        "natoms": len(res.atoms),
                        "rw": float(res.rw),
                        "raw_rw": float(res.atoms.info["raw_rw"]),
                    }
                    for res in results
                ],
            }
        )
        logging.getLogger(__name__).info("row %d done", row)
    return records


def independent_points(record):
    """Shannon count of the fit range, (rmax - rmin) Qmax / pi."""
    rmin, rmax = record["fit_range"]
    return (rmax - rmin) * record["qmax"] / np.pi


def pick(record, k):
    """Count of the candidate a rule ranks first: k None is Rw alone."""
    cands = record["candidates"]
    if k is None:
        return min(cands, key=lambda c: c["rw"])["natoms"]
    mu = np.log(record["count_estimate"])
    sigma = record["count_estimate_width"]
    n_ind = k * independent_points(record)

    def score(c):
        prior = ((np.log(c["natoms"]) - mu) / sigma) ** 2
        return n_ind * np.log(c["rw"] ** 2) + prior

    return min(cands, key=score)["natoms"]


def table(records):
    """Counts right per rule, per extent and in all."""
    from diffpy_cbldm.evaluation import count_right

    rules = {"rw": None} | {f"posterior {k:g}": k for k in KS}
    groups = {"all": records}
    for rec in records:
        groups.setdefault(rec["extent"], []).append(rec)
    out = {}
    for name, members in groups.items():
        row = {"cases": len(members)}
        for rule, k in rules.items():
            row[rule] = sum(
                count_right(pick(r, k), r["natoms"]) for r in members
            )
        row["ceiling"] = sum(
            any(count_right(c["natoms"], r["natoms"]) for c in r["candidates"])
            for r in members
        )
        out[name] = row
    return out


def print_table(out):
    names = list(next(iter(out.values())).keys())
    print(f"{'group':<16}" + "".join(f"{n:>15}" for n in names))
    for group, row in out.items():
        print(f"{group:<16}" + "".join(f"{row[n]:>15}" for n in names))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "mmnp-v2.h5"))
    parser.add_argument("--weights", default=None)
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--per-type", type=int, default=10)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--noiseless", action="store_true")
    parser.add_argument(
        "--strata",
        type=int,
        default=1,
        help="draw the candidates in this many count strata of the "
        "estimator's Gaussian (n / strata each; default 1: propose as is)",
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import torch

    from diffpy_cbldm import CbLDMGenerator
    from diffpy_cbldm.atomic import write_json
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.evaluation import machine_record, select_cases

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    gen = CbLDMGenerator.from_pretrained(args.weights)
    with open_dataset(args.data) as dataset:
        rows = select_cases(dataset, args.split, args.per_type, args.seed)
        records = solve_cases(
            gen,
            dataset,
            rows,
            args.n,
            args.seed,
            args.noiseless,
            args.strata,
        )
    out = table(records)
    print_table(out)
    path = write_json(
        args.out,
        {
            "args": vars(args),
            "weights": gen.name,
            "table": out,
            "records": records,
            "wall_s": time.perf_counter() - started,
            "machine": machine_record(),
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
