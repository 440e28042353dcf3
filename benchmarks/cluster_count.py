"""Benchmark: distinct cluster shapes per structure type, and the time.

Counts the shapes of ``enumerate_shapes`` (5-256 atoms) per structure
type and per size bin (5-79, 80-169, 170-256 atoms), for ASE's complete
clusters only (``incomplete_shells=False``, "before") and with the
icosahedral and octahedral families extended by incomplete outer shells
("after", the default). Also: how the shapes of each type split between
builders, how many shapes two types both produce (each goes to the
first type of ``TYPE_PRIORITY``), and the wall time of a cold
enumeration (a fresh interpreter, imports included), median of
``--repeats`` runs.

``--check-ase`` also rebuilds every lattice cut with ASE's own
``ase.cluster`` factory and counts the agreements (several minutes).

Run from the repository root::

    python benchmarks/cluster_count.py [--repeats 3] [--check-ase]

Prints the tables and writes ``benchmarks/results/cluster_count.json``
and ``docs/benchmarks/cluster_count.rst``.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from diffpy_cbldm.atomic import atomic_path, write_json
from diffpy_cbldm.clusters import build
from diffpy_cbldm.clusters.build import (
    CENTRES,
    IDEAL_COVERA,
    STRUCTURE_TYPES,
    TYPE_PRIORITY,
    enumerate_shapes,
    shape_key,
)

ROOT = Path(__file__).resolve().parents[1]
BINS = ((5, 79), (80, 169), (170, 256))
COMMAND = "python benchmarks/cluster_count.py"

_TIMER = """
import json, time
t = time.perf_counter()
from diffpy_cbldm.clusters.build import enumerate_shapes
shapes = enumerate_shapes(incomplete_shells={flag})
print(json.dumps([time.perf_counter() - t, len(shapes)]))
"""


def cpu_model():
    try:
        out = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def cold_time(flag):
    """Seconds for one enumeration in a fresh interpreter, and the count."""
    out = subprocess.run(
        [sys.executable, "-c", _TIMER.format(flag=flag)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    seconds, count = json.loads(out.strip().splitlines()[-1])
    return seconds, count


def counts(shapes):
    """Shapes per type: total and per size bin."""
    table = {}
    for stype in STRUCTURE_TYPES:
        sizes = [s.natoms for s in shapes if s.stype == stype]
        table[stype] = {
            "total": len(sizes),
            **{
                f"{lo}-{hi}": sum(lo <= n <= hi for n in sizes)
                for lo, hi in BINS
            },
        }
    table["all"] = {
        k: sum(table[t][k] for t in STRUCTURE_TYPES)
        for k in table[STRUCTURE_TYPES[0]]
    }
    return table


def kind(shape):
    params = dict(shape.params)
    if "added" in params:
        return "grown shell"
    if "removed" in params:
        return "eroded shell"
    if shape.builder == "block":
        return "block"
    if "center" in params:
        return f"cut around {params['center']}"
    return "complete"


def builders(shapes):
    return {
        stype: dict(
            sorted(
                Counter(kind(s) for s in shapes if s.stype == stype).items()
            )
        )
        for stype in STRUCTURE_TYPES
    }


def shared_shapes():
    """Shapes that two or more types produce, by the types involved.

    Uses the enumeration's own candidate generator (a private function)
    before the shapes are given to one type.
    """
    from scipy.spatial.distance import pdist

    owners = {}
    for stype in TYPE_PRIORITY:
        extended = stype in ("icosahedral", "octahedral")
        for builder, params, x in build._candidates(stype, 5, 256, extended):
            params = build._params_tuple(params)
            if x is None:
                x = build._unit_positions(stype, builder, params)
            if not 5 <= len(x) <= 256 or not build._is_three_dimensional(x):
                continue
            key = build._key_of_distances(pdist(x))
            owners.setdefault(key, set()).add(stype)
    shared = Counter(
        "+".join(t for t in TYPE_PRIORITY if t in types)
        for types in owners.values()
        if len(types) > 1
    )
    return dict(sorted(shared.items()))


def check_ase(shapes):
    """Rebuild each lattice cut with ase.cluster; count agreements."""
    import ase.cluster

    constant = {
        "sc": 1.0,
        "bcc": 2.0 / np.sqrt(3.0),
        "fcc": np.sqrt(2.0),
        "hcp": (1.0, IDEAL_COVERA),
    }
    result = Counter()
    cuts = [s for s in shapes if "center" in dict(s.params)]
    for s in tqdm(cuts, desc="ASE cross-check", unit="cut"):
        p = dict(s.params)
        atoms = getattr(ase.cluster, s.builder)(
            "Cu",
            [list(m) for m in p["surfaces"]],
            list(p["layers"]),
            latticeconstant=constant[s.stype],
            center=CENTRES[s.stype][p["center"]],
        )
        same = len(atoms) == s.natoms and shape_key(atoms) == shape_key(
            s.unit_positions()
        )
        result[(s.stype, p["center"], "same" if same else "differs")] += 1
    return {"/".join(k): v for k, v in sorted(result.items())}


def rst_table(header, rows):
    widths = [
        max(len(str(r[i])) for r in [header, *rows])
        for i in range(len(header))
    ]
    rule = "  ".join("=" * w for w in widths)
    line = lambda r: "  ".join(  # noqa: E731
        str(v).ljust(w) for v, w in zip(r, widths)
    ).rstrip()
    return "\n".join([rule, line(header), rule, *map(line, rows), rule])


def count_table(before, after):
    keys = ["total"] + [f"{lo}-{hi}" for lo, hi in BINS]
    header = ["type"] + [f"before {k}" for k in keys]
    header += [f"after {k}" for k in keys]
    rows = [
        [t] + [before[t][k] for k in keys] + [after[t][k] for k in keys]
        for t in (*STRUCTURE_TYPES, "all")
    ]
    return rst_table(header, rows)


def builder_table(split):
    kinds = sorted({k for v in split.values() for k in v})
    rows = [[t] + [split[t].get(k, "") for k in kinds] for t in split]
    return rst_table(["type", *kinds], rows)


def write_rst(path, record, tables):
    timing = record["timing"]
    machine = record["machine"]

    def load(values):
        return " ".join(f"{v:.1f}" for v in values)

    def runs(values):
        return ", ".join(f"{v:.1f}" for v in values)

    lines = [
        "Cluster count benchmark",
        "=======================",
        "",
        "Distinct cluster shapes of 5-256 atoms per structure type, from",
        "``diffpy_cbldm.clusters.build.enumerate_shapes``, measured by",
        "``benchmarks/cluster_count.py`` (results also in",
        "``benchmarks/results/cluster_count.json``). What is enumerated",
        "and why: :doc:`../theory_clusters`.",
        "",
        f"* Command: ``{record['command']}``",
        f"* Machine: {machine['cpu']}, {machine['cores']} cores shared "
        "with other jobs",
        f"  (load average {load(machine['load_before'])} before, "
        f"{load(machine['load_after'])} after); Python "
        f"{machine['python']}, ASE {machine['ase']}.",
        "* Wall time of a cold enumeration of all seven types, 5-256",
        "  atoms (fresh interpreter, imports included), median of "
        f"{timing['repeats']}:",
        f"  {timing['after_s']:.1f} s with incomplete shells (runs "
        f"{runs(timing['after_runs'])}),",
        f"  {timing['before_s']:.1f} s without (runs "
        f"{runs(timing['before_runs'])}).",
        "* before: ASE's complete clusters only "
        "(``incomplete_shells=False``);",
        "  after: the default, icosahedra and regular octahedra extended",
        "  by incomplete outer shells.",
        "",
        "Shapes per type and size bin (atoms):",
        "",
        ".. code-block:: text",
        "",
        *("   " + r for r in tables["counts"].splitlines()),
        "",
        "Shapes per builder (after):",
        "",
        ".. code-block:: text",
        "",
        *("   " + r for r in tables["builders"].splitlines()),
        "",
        "Shapes produced by more than one type, before each is given to",
        "the first type of ``TYPE_PRIORITY`` (icosahedral, decahedral,",
        "octahedral, fcc, hcp, bcc, sc):",
        "",
        ".. code-block:: text",
        "",
        *("   " + r for r in tables["shared"].splitlines()),
        "",
    ]
    if record.get("ase_check"):
        lines += [
            "Lattice cuts rebuilt with ASE's ``ase.cluster`` factories "
            "(``--check-ase``), same shape or not:",
            "",
            ".. code-block:: text",
            "",
            *("   " + r for r in tables["ase"].splitlines()),
            "",
            "Around the hcp octahedral hole some atoms lie exactly on a",
            "boundary plane; ASE keeps or drops them depending on",
            "floating-point rounding, this package drops them (exact",
            "arithmetic of ASE's rule ``n . r < d``).",
            "",
        ]
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines), encoding="utf-8")


def main(argv=None):
    import ase

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-ase", action="store_true")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")

    load_before = os.getloadavg()
    after_runs, before_runs = [], []
    for _ in tqdm(range(args.repeats), desc="cold enumerations"):
        after_runs.append(cold_time(True)[0])
        before_runs.append(cold_time(False)[0])

    after = enumerate_shapes()
    before = enumerate_shapes(incomplete_shells=False)
    record = {
        "command": COMMAND
        + (f" --repeats {args.repeats}" if args.repeats != 3 else "")
        + (" --check-ase" if args.check_ase else ""),
        "machine": {
            "cpu": cpu_model(),
            "cores": len(os.sched_getaffinity(0)),
            "load_before": load_before,
            "load_after": os.getloadavg(),
            "python": platform.python_version(),
            "ase": ase.__version__,
        },
        "bins": [f"{lo}-{hi}" for lo, hi in BINS],
        "counts_before": counts(before),
        "counts_after": counts(after),
        "builders_after": builders(after),
        "shared_between_types": shared_shapes(),
        "timing": {
            "repeats": args.repeats,
            "after_runs": after_runs,
            "before_runs": before_runs,
            "after_s": statistics.median(after_runs),
            "before_s": statistics.median(before_runs),
        },
    }
    if args.check_ase:
        record["ase_check"] = check_ase(after)

    tables = {
        "counts": count_table(record["counts_before"], record["counts_after"]),
        "builders": builder_table(record["builders_after"]),
        "shared": rst_table(
            ["types", "shapes"],
            list(record["shared_between_types"].items()),
        ),
    }
    if args.check_ase:
        tables["ase"] = rst_table(
            ["type/centre/result", "cuts"], list(record["ase_check"].items())
        )
    for name, table in tables.items():
        print(f"\n{name}\n{table}")
    print(
        f"\ncold enumeration: {record['timing']['after_s']:.1f} s (after), "
        f"{record['timing']['before_s']:.1f} s (before)"
    )

    out = ROOT / "benchmarks" / "results" / "cluster_count.json"
    write_json(out, record)
    write_rst(
        ROOT / "docs" / "benchmarks" / "cluster_count.rst", record, tables
    )


if __name__ == "__main__":
    main()
