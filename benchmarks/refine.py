"""Benchmark: full ``refine_cluster`` runs, wall time, Rw and values.

Cases:

* ``synthetic-147``: a 147-atom Pt icosahedron against its own PDF made
  with zoom 1.03, Uiso 0.008 Å², delta2 2 Å², scale 0.7 (qmax 25,
  qdamp 0.04), refined from zoom 1, Uiso 0.005, delta2 0.
* ``JQ_S1 + FCC``: the measured Pt nanoparticle PDF JQ_S1.gr (0-50 Å,
  Q-range from its header, qdamp 0.04 by default) with FCC Pt octahedra
  (ase.cluster.Octahedron) of 201 and 976 atoms, whole data range.
* ``positions-13``: a 13-atom Pt icosahedron, coordinates perturbed by
  0.1 Å, refined with ``refine_positions=True`` against the ideal
  cluster's PDF (8 iterations per stage at most).

Each case is run ``--repeat`` times; the table gives the fastest and the
median wall time, once with torch's default number of threads and once
with one thread (``--threads 0 1``). Run from the repository root::

    python benchmarks/refine.py [--threads 0 1] [--repeat 3]

Writes ``benchmarks/results/refine.json``.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "refine.json"
JQ_S1 = ROOT.parent / "shared" / "data" / "experimental" / "JQ_S1.gr"


def cpu_model():
    try:
        text = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def zoomed(atoms, zoom):
    out = atoms.copy()
    centre = atoms.positions.mean(axis=0)
    out.positions = centre + zoom * (atoms.positions - centre)
    return out


def engine_pdf(atoms, uiso, **settings):
    from diffpy_cbldm.pdf.debye import DebyePDFCalculator

    atoms = atoms.copy()
    atoms.set_array("uiso", np.full(len(atoms), uiso))
    return DebyePDFCalculator(rmin=0.0, rmax=30.0, **settings)(atoms)


def cases():
    """(name, atoms, data, keyword arguments of refine_cluster)."""
    from ase.cluster import Icosahedron, Octahedron

    ico = Icosahedron("Pt", 4)
    r, g = engine_pdf(zoomed(ico, 1.03), 0.008, qdamp=0.04, delta2=2.0)
    yield "synthetic-147", ico, (r, 0.7 * g), dict(qmax=25.0, qdamp=0.04)
    if JQ_S1.is_file():
        for length, cutoff in ((7, 2), (12, 4)):
            atoms = Octahedron("Pt", length, cutoff)
            name = f"JQ_S1 + Octahedron(Pt,{length},{cutoff})"
            yield name, atoms, JQ_S1, {}
    small = Icosahedron("Pt", 2)
    r, g = engine_pdf(small, 0.006, qdamp=0.04)
    start = small.copy()
    start.positions += np.random.default_rng(1).normal(0, 0.1, (13, 3))
    yield (
        "positions-13",
        start,
        (r, g),
        dict(qdamp=0.04, rmax=15.0, refine_positions=True, max_nfev=8),
    )


def run_case(name, atoms, data, kwargs, repeat):
    from diffpy_cbldm.refine import refine_cluster

    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = refine_cluster(atoms, data, **kwargs)
        times.append(time.perf_counter() - started)
    values = {
        k: v
        for k, (v, u) in result.values.items()
        if u is not None and not k.startswith(("x_", "y_", "z_"))
    }
    return {
        "case": name,
        "atoms": len(atoms),
        "points": len(result.r),
        "r_range": [float(result.r[0]), float(result.r[-1])],
        "seconds_min": min(times),
        "seconds_median": statistics.median(times),
        "rw": result.rw,
        "refined": values,
        "settings": {k: v for k, (v, _) in result.settings.items()},
        "stages": [
            {
                "freed": list(s.freed),
                "rw": s.rw,
                "evaluations": s.nfev,
                "seconds": s.seconds,
            }
            for s in result.stages
        ],
    }


def table(rows):
    head = (
        f"{'case':<30s} {'atoms':>5s} {'s (min)':>8s} {'s (med)':>8s} "
        f"{'Rw':>7s}  refined values"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        values = ", ".join(
            f"{k} {v:.4g}" for k, v in sorted(row["refined"].items())
        )
        lines.append(
            f"{row['case']:<30s} {row['atoms']:>5d} "
            f"{row['seconds_min']:>8.2f} {row['seconds_median']:>8.2f} "
            f"{row['rw']:>7.4f}  {values}"
        )
    return "\n".join(lines)


def evaluation_ms(repeat=30):
    """Milliseconds per G(r) of the 147-atom icosahedron on 2850 points,
    as the generator computes it inside a refinement: (fastest,
    median)."""
    from ase.cluster import Icosahedron

    from diffpy_cbldm.refine import DebyeClusterGenerator

    gen = DebyeClusterGenerator(Icosahedron("Pt", 4))
    gen.qdamp.setValue(0.04)
    r = np.arange(1.5, 30.0, 0.01)
    times = []
    for k in range(repeat):
        gen.zoomscale.setValue(1 + 1e-4 * k)
        started = time.perf_counter()
        gen(r)
        times.append(time.perf_counter() - started)
    return 1e3 * min(times), 1e3 * statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[0, 1],
        help="torch intra-op thread counts to run with, 0 for torch's "
        "default (default: 0 1)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    from diffpy_cbldm.atomic import write_json

    default_threads = torch.get_num_threads()
    runs = []
    for threads in args.threads:
        torch.set_num_threads(threads or default_threads)
        fastest, median = evaluation_ms()
        rows = [run_case(*case, args.repeat) for case in cases()]
        print(f"torch threads: {torch.get_num_threads()}")
        print(
            f"one G(r), 147 atoms, 2850 points: {fastest:.2f} ms fastest, "
            f"{median:.2f} ms median"
        )
        print(table(rows))
        runs.append(
            {
                "torch_threads": torch.get_num_threads(),
                "evaluation_ms_147": {"min": fastest, "median": median},
                "cases": rows,
            }
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": " ".join(
            ["python benchmarks/refine.py"]
            + (argv if argv is not None else sys.argv[1:])
        ),
        "machine": cpu_model(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "repeat": args.repeat,
        "runs": runs,
    }
    write_json(RESULTS, report)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
