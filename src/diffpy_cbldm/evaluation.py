"""Evaluation of a generator on held-out structures (paper, Tables 2-3).

For each test structure the stored PDF (first acquisition draw: its own
Q settings and noise) is given to the generator as a measurement; the
evaluation records, per structure:

* ``raw_rw``: the best Rw of the `n` raw candidates (free scale, no
  refinement), the paper's "best of 10", as the generator gives it
  (``atoms.info["rw"]``: CbLDM at the data's displacement,
  :func:`~diffpy_cbldm.generator.data_displacement`);
* ``raw_rw_uiso_005``: the same at Uiso 0.005 Å² and no delta2 for
  every generator (:func:`~diffpy_cbldm.generator.candidate_rw`'s
  default), the definition of ``raw_rw`` until 2026-12-03;
* ``rw_uiso``, ``rw_delta2``: the displacement ``raw_rw`` was computed
  with, and ``true_uiso``, ``true_delta2``: the PDF's own;
* ``refined_rw``: the Rw of the top-ranked candidate after refinement
  with :func:`diffpy_cbldm.refine.refine_cluster`;
* the atom count of that top-ranked candidate and its structure type,
  assigned by :class:`StructureTyper`;
* ``noise_rw``: the Rw of the PDF's own stored noise (:func:`noise_rw`),
  the floor of ``refined_rw``;
* wall times of ``propose`` and of the refinements.

With ``noiseless=True`` the PDFs are given without their stored noise
(:func:`case_data`).

:func:`summarise` groups them per structure type and per size bin
(5-80, 80-170, 170-256 atoms, the paper's Table 3).
"""

import logging
import time

import numpy as np

# The bonds of a cluster live in clusters.bonds; importable here too.
from diffpy_cbldm.clusters.bonds import (  # noqa: F401
    BOND_FACTOR,
    connected_parts,
    nearest_neighbour_distance,
)

__all__ = [
    "COUNT_TOLERANCE",
    "EXTENTS",
    "case_groups",
    "count_right",
    "SIZE_BINS",
    "StructureTyper",
    "case_data",
    "diameter",
    "evaluate",
    "extent",
    "format_ranked",
    "format_summary",
    "noise_rw",
    "principal_extents",
    "reference_cases",
    "run_evaluation",
    "select_cases",
    "size_bin",
    "solve_cases",
    "summarise",
]

logger = logging.getLogger(__name__)

COUNT_TOLERANCE = 0.10
"""Relative atom-count error counted as right: the issue's "atom count
within 10 %"."""

SIZE_BINS = ((5, 80), (80, 170), (170, 256))
"""Atom-count bins of the paper's Table 3; a count n is in bin (lo, hi)
when lo <= n < hi, the last bin including 256."""


def count_right(count, truth):
    """Whether `count` is within :data:`COUNT_TOLERANCE` of `truth`."""
    return abs(count - truth) / truth <= COUNT_TOLERANCE


def case_groups(records):
    """The groups of case records that benchmark tables list: one per
    structure type (sorted), one per :data:`EXTENTS` value and ``"all"``.

    Yields
    ------
    label : str
    group : list of dict
        The records (each with ``"type"`` and ``"extent"``) of the group;
        empty groups are skipped.
    """
    labels = sorted({r["type"] for r in records}) + list(EXTENTS) + ["all"]
    for label in labels:
        group = [
            r for r in records if label in ("all", r["type"], r["extent"])
        ]
        if group:
            yield label, group


def size_bin(n):
    """Label ``"lo-hi"`` of the size bin of `n` atoms."""
    for lo, hi in SIZE_BINS:
        if lo <= n < hi or (hi == SIZE_BINS[-1][1] and n == hi):
            return f"{lo}-{hi}"
    return f"<{SIZE_BINS[0][0]}" if n < SIZE_BINS[0][0] else "256+"


EXTENTS = ("fits r-range", "beyond r-range")
"""Labels of :func:`extent`: whether the particle's largest
interatomic distance lies within the r-range of its PDF."""


def diameter(positions):
    """Largest interatomic distance of a cluster, Å (0 for one atom)."""
    from scipy.spatial.distance import pdist

    positions = np.asarray(positions, dtype=float)
    return float(pdist(positions).max()) if len(positions) > 1 else 0.0


def principal_extents(positions):
    """Lengths of a cluster along its principal axes, Å, longest first.

    The span (largest minus smallest coordinate) of the atom centres along
    each eigenvector of their covariance: about 0 across a monolayer, one
    layer spacing across two layers, so a rod reads (long, thin, thin) and
    a plate (wide, wide, thin). Zeros for fewer than two atoms.
    """
    x = np.asarray(positions, dtype=float)
    if len(x) < 2:
        return np.zeros(3)
    x = x - x.mean(axis=0)
    _, axes = np.linalg.eigh(x.T @ x)
    p = x @ axes
    return np.sort(p.max(axis=0) - p.min(axis=0))[::-1]


def extent(diameter_, rmax):
    """``"fits r-range"`` when a particle of largest interatomic distance
    `diameter_` (Å) is seen whole by a PDF that reaches `rmax` (Å), else
    ``"beyond r-range"``: G(r) of a rod or plate longer than `rmax` holds
    nothing of its length, and so little of its atom count."""
    return EXTENTS[0] if diameter_ <= rmax else EXTENTS[1]


class StructureTyper:
    """Assign a structure type to any cluster by its PDF.

    Every library cluster and the cluster to type are rescaled to the
    same nearest-neighbour distance (2.75 Å), their PDFs are computed with
    one set of settings (r 1.5-20 Å, Qmax 25 Å⁻¹, Qdamp 0.02 Å⁻¹, Biso
    0.3 Å²), and the type is that of the library cluster with the lowest
    Rw after a free scale. The library is one metal per shape of the
    given rows of a training set, so this is a nearest-shape classifier:
    a generated cluster gets the type of the known shape whose PDF it
    resembles most.

    Parameters
    ----------
    dataset : TrainingSet
        Open training set (:func:`diffpy_cbldm.dataset.store
        .open_dataset`).
    rows : array_like of int
        Rows forming the library (e.g. the training split).
    """

    NN = 2.75
    SETTINGS = dict(
        rmin=1.5, rmax=20.0, rstep=0.05, qmin=0.7, qmax=25.0, qdamp=0.02
    )

    def __init__(self, dataset, rows, batch=64):
        from ase import Atoms

        from diffpy_cbldm.pdf.debye import DebyePDFCalculator

        rows = np.asarray(rows)
        shape_index = dataset.array("shape_index")[rows]
        _, first = np.unique(shape_index, return_index=True)
        self.rows = rows[np.sort(first)]
        types = dataset.array("structure_type")
        names = dataset.manifest["structure_types"]
        self.types = np.array([names[int(types[i])] for i in self.rows])
        self.natoms = dataset.array("natoms")[self.rows].astype(int)
        self._calc = DebyePDFCalculator(biso=0.3, **self.SETTINGS)
        clusters = []
        for i, n in zip(self.rows, self.natoms):
            x = dataset.file["positions"][i, :n].astype(float)
            clusters.append(Atoms(f"Au{n}", positions=self._rescale(x)))
        pdfs = [
            self._calc.batch(clusters[k : k + batch])[1]
            for k in range(0, len(clusters), batch)
        ]
        self.pdfs = np.concatenate(pdfs)

    def _rescale(self, x):
        return x * (self.NN / nearest_neighbour_distance(x))

    def __len__(self):
        return len(self.rows)

    def match(self, atoms):
        """(type, Rw, library row) of the best-matching library cluster."""
        from ase import Atoms

        from diffpy_cbldm.pdf.rw import rw_free_scale

        x = self._rescale(atoms.positions)
        _, g = self._calc(Atoms(f"Au{len(x)}", positions=x))
        rw, _ = rw_free_scale(self.pdfs, g[None, :])
        k = int(np.argmin(rw))
        return str(self.types[k]), float(rw[k]), int(self.rows[k])

    def __call__(self, atoms):
        """Structure type of `atoms`."""
        return self.match(atoms)[0]


def machine_record():
    """Where a benchmark ran: platform, Python, torch and its threads,
    CPUs and load average, as every results JSON records it."""
    import os
    import platform
    import sys

    import torch

    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()),
    }


def site_refinement_settings(site_moves=None, site_count_window=None):
    """The settings of the site refinement every refined candidate got
    (:mod:`diffpy_cbldm.site_refinement`; its defaults where None), for
    the records; an unbounded count window is written as None."""
    from diffpy_cbldm import site_refinement as sr

    window = (
        sr.COUNT_WINDOW if site_count_window is None else site_count_window
    )
    return {
        "max_moves": sr.MAX_MOVES if site_moves is None else site_moves,
        "count_window": float(window) if np.isfinite(window) else None,
        "move_penalty": sr.MOVE_PENALTY,
    }


def select_cases(dataset, split="test", per_type=10, seed=0):
    """Rows of `split` to evaluate: up to `per_type` of each structure
    type, drawn at random (seeded) across the three size bins in turn so
    that every bin is represented when the split has it."""
    rng = np.random.default_rng(seed)
    rows = dataset.split_indices(split)
    types = dataset.array("structure_type")[rows]
    natoms = dataset.array("natoms")[rows]
    chosen = []
    for t in np.unique(types):
        in_type = rows[types == t]
        labels = np.array([size_bin(int(k)) for k in natoms[types == t]])
        bins = [
            rng.permutation(in_type[labels == f"{lo}-{hi}"])
            for lo, hi in SIZE_BINS
        ]
        picked = []
        while len(picked) < per_type and any(len(b) for b in bins):
            for k, b in enumerate(bins):
                if len(b) and len(picked) < per_type:
                    picked.append(int(b[0]))
                    bins[k] = b[1:]
        chosen += picked
    return np.array(sorted(chosen), dtype=int)


def case_data(dataset, row, noiseless=False):
    """The stored PDF of `row` (draw 0), from r = 0.5 Å, as a PDFData
    with its Q settings, and the row's TrainingSample.

    With `noiseless`, the stored noise is subtracted
    (:meth:`~diffpy_cbldm.dataset.store.TrainingSet.noise`): the PDF the
    same acquisition would give without counting noise.
    """
    from diffpy_cbldm.pdf.datafile import PDFData

    sample = dataset[row]
    s = sample.settings[0]
    r = dataset.rgrid
    keep = r >= 0.5
    g = sample.pdf[0].astype(float)
    if noiseless:
        g = g - dataset.noise(row, 0)
    return (
        PDFData.from_arrays(
            r[keep],
            g[keep],
            metadata={
                "qmin": s.qmin,
                "qmax": s.qmax,
                "qdamp": s.qdamp,
                "qbroad": s.qbroad,
                "composition": sample.element,
            },
        ),
        sample,
    )


def noise_rw(dataset, row, rmin=None):
    """Rw of the stored noise alone against the stored PDF of `row`
    (draw 0), over the fit range `rmin` (refinement's default, 1.5 Å)
    to the grid's end.

    A model equal to the noiseless PDF has exactly this Rw: it is the
    floor of the refined Rw of any candidate, the true structure's
    included, short of fitting the noise itself.
    """
    from diffpy_cbldm.pdf.rw import rw
    from diffpy_cbldm.refine import DEFAULTS

    rmin = DEFAULTS["rmin"] if rmin is None else float(rmin)
    keep = dataset.rgrid >= rmin
    g = dataset[row].pdf[0].astype(float)[keep]
    return float(rw(g, g - dataset.noise(row, 0)[keep]))


def evaluate(
    generators,
    dataset,
    rows,
    *,
    typer,
    n=10,
    seed=0,
    refine=True,
    noiseless=False,
    count_given=False,
    progress=True,
    site_moves=None,
    site_count_window=None,
):
    """Run generators on dataset rows and record the outcome of each.

    Parameters
    ----------
    generators : dict of str -> generator
        Objects with ``propose(data, n, seed=...)`` (CbLDMGenerator,
        LibraryGenerator...), evaluated on the same cases.
    dataset : TrainingSet
    rows : array_like of int
    typer : StructureTyper
    n : int
        Candidates per case.
    seed : int
    refine : bool
        Refine every candidate and rank (else only raw Rw).
    noiseless : bool
        Give the stored PDFs without their noise (:func:`case_data`).
    count_given : bool
        Give each generator the true atom count (``propose(...,
        count=)``, as a user who knows it from elsewhere would): what the
        generator makes of the rest of the structure. Only for generators
        that take a count (CbLDMGenerator).
    site_moves, site_count_window : optional
        The site refinement's settings
        (:func:`~diffpy_cbldm.generator.refine_candidates`; its defaults
        when None).

    Returns
    -------
    list of dict
        One record per (generator, row). ``noise_rw`` is the Rw of the
        noise in the PDF given (:func:`noise_rw`; 0 when `noiseless`),
        the floor of ``refined_rw``.
    """
    from tqdm.auto import tqdm

    from diffpy_cbldm.generator import candidate_rw, refine_candidates

    records = []
    for row in tqdm(rows, desc="evaluating", disable=not progress):
        data, sample = case_data(dataset, int(row), noiseless)
        truth = len(sample.positions)
        size = diameter(sample.positions)
        floor = 0.0 if noiseless else noise_rw(dataset, int(row))
        for name, gen in generators.items():
            given = {"count": truth} if count_given else {}
            t0 = time.perf_counter()
            cands = gen.propose(data, n, seed=seed, **given)
            t_propose = time.perf_counter() - t0
            raw = [c.info["rw"] for c in cands]
            best_raw = cands[int(np.argmin(raw))]
            rec = {
                "generator": name,
                "row": int(row),
                "type": sample.structure_type,
                "natoms": truth,
                "size_bin": size_bin(truth),
                "diameter": size,
                "extent": extent(size, float(data.r[-1])),
                "noise_rw": floor,
                "raw_rw": float(min(raw)),
                "raw_rw_uiso_005": float(min(candidate_rw(cands, data))),
                "rw_uiso": cands[0].info.get("rw_uiso"),
                "rw_delta2": cands[0].info.get("rw_delta2"),
                "true_uiso": sample.settings[0].uiso,
                "true_delta2": sample.settings[0].delta2,
                "raw_natoms": len(best_raw),
                "propose_s": t_propose,
            }
            top = best_raw
            if refine:
                t0 = time.perf_counter()
                results = refine_candidates(
                    cands,
                    data,
                    progress=False,
                    site_moves=site_moves,
                    site_count_window=site_count_window,
                )
                rec["refine_s"] = time.perf_counter() - t0
                rec["refined_rw"] = float(results[0].rw)
                top = results[0].atoms
            rec["top_natoms"] = len(top)
            rec["count_error"] = abs(len(top) - truth) / truth
            rec["top_type"] = typer(top) if len(top) > 1 else "none"
            rec["top_generator"] = top.info.get("generator")
            for key in ("site_moves", "site_added", "site_removed"):
                rec[f"top_{key}"] = top.info.get(key)
            records.append(rec)
            logger.info("%s", rec)
    return records


def _stats(group, refine):
    out = {
        "cases": len(group),
        "median_raw_rw": float(np.median([r["raw_rw"] for r in group])),
        "count_within_10pct": float(
            np.mean([r["count_error"] <= COUNT_TOLERANCE for r in group])
        ),
        "type_correct": float(
            np.mean([r["top_type"] == r["type"] for r in group])
        ),
        "median_propose_s": float(np.median([r["propose_s"] for r in group])),
    }
    if all("raw_rw_uiso_005" in r for r in group):
        out["median_raw_rw_uiso_005"] = float(
            np.median([r["raw_rw_uiso_005"] for r in group])
        )
    if all("noise_rw" in r for r in group):
        out["median_noise_rw"] = float(
            np.median([r["noise_rw"] for r in group])
        )
    if refine:
        out["median_refined_rw"] = float(
            np.median([r["refined_rw"] for r in group])
        )
        out["median_solve_s"] = float(
            np.median([r["propose_s"] + r["refine_s"] for r in group])
        )
    return out


def summarise(records):
    """Per generator: statistics overall, per type, per size bin and per
    extent (whether the particle fits in its PDF's r-range, :func:`extent`;
    records without it, from older runs, are left out of that grouping).

    Returns
    -------
    dict
        ``{generator: {"all": stats, "type": {t: stats}, "size_bin":
        {b: stats}, "extent": {e: stats}}}`` where stats holds ``cases``,
        ``median_raw_rw``, ``median_refined_rw``, ``count_within_10pct``,
        ``type_correct``, ``median_propose_s``, ``median_solve_s``,
        ``median_raw_rw_uiso_005`` and ``median_noise_rw`` (when every
        record has ``raw_rw_uiso_005``, ``noise_rw``).
    """
    out = {}
    for name in dict.fromkeys(r["generator"] for r in records):
        mine = [r for r in records if r["generator"] == name]
        refine = all("refined_rw" in r for r in mine)
        entry = {"all": _stats(mine, refine)}
        for key in ("type", "size_bin", "extent"):
            entry[key] = {}
            for value in sorted({r[key] for r in mine if key in r}):
                group = [r for r in mine if r.get(key) == value]
                entry[key][value] = _stats(group, refine)
        out[name] = entry
    return out


_REFERENCE_TYPES = {
    "BCC": "bcc",
    "Decahedron": "decahedral",
    "HCP": "hcp",
    "Icosahedron": "icosahedral",
    "Octahedron": "octahedral",
    "SC": "sc",
}


def reference_cases(folder):
    """The six DiffPy-computed reference PDFs of ``shared/data``.

    Returns
    -------
    list of (name, PDFData, ase.Atoms)
        The PDF on r = 0, 0.01, ..., 29.99 Å (the files' r column is
        mislabelled, see their README) with DeepStruc's settings (qmin
        0.7, qmax 25, qdamp 0) and the true cluster.
    """
    from pathlib import Path

    import h5py
    from ase import Atoms

    from diffpy_cbldm.pdf.datafile import PDFData

    folder = Path(folder)
    cases = []
    for gr in sorted(folder.glob("*.gr")):
        (h5,) = folder.glob(f"graph_{gr.stem}_atom_*.h5")
        element = h5.stem.split("_atom_")[1].split("_")[0]
        with h5py.File(h5, "r") as fh:
            x = fh["Node Feature Matrix"][:]
        g = np.loadtxt(gr)[:, 1]
        r = 0.01 * np.arange(len(g))
        data = PDFData.from_arrays(
            r,
            g,
            metadata={
                "qmin": 0.7,
                "qmax": 25.0,
                "qdamp": 0.0,
                "composition": element,
            },
        )
        atoms = Atoms(f"{element}{len(x)}", x)
        atoms.info["structure_type"] = _REFERENCE_TYPES[gr.stem.split("_")[0]]
        cases.append((gr.stem, data, atoms))
    return cases


EXPERIMENTAL_RMAX = 30.0
"""Upper end (Å) of the fit range for the measured PDFs, or the data's
end if sooner (Au144pMBA.gr ends at 20 Å): the range the model sees
(JQ_S1.gr runs to 50 Å, beyond any 256-atom cluster)."""


def solve_cases(generators, cases, *, typer, n=10, seed=0, **refine_options):
    """Solve named PDFs with each generator; the ranked candidates.

    Parameters
    ----------
    generators : dict of str -> generator
    cases : list of (name, data, true ase.Atoms or None)
    **refine_options
        Keywords of :func:`~diffpy_cbldm.refine.refine_cluster`; an
        ``rmax`` beyond a case's data stops at the data's end.

    Returns
    -------
    list of dict
        Per (generator, case): ``ranked`` (rank, refined Rw, raw Rw,
        atoms, type of each), ``propose_s``, ``solve_s`` and, when the
        truth is known, ``true_natoms``, ``true_type``.
    """
    from diffpy_cbldm.generator import refine_candidates

    out = []
    for name, data, truth in cases:
        options = dict(refine_options)
        if options.get("rmax") is not None:
            options["rmax"] = min(options["rmax"], float(data.r[-1]))
        for gen_name, gen in generators.items():
            t0 = time.perf_counter()
            cands = gen.propose(data, n, seed=seed)
            t_propose = time.perf_counter() - t0
            results = refine_candidates(cands, data, progress=False, **options)
            t_solve = time.perf_counter() - t0
            ranked = [
                {
                    "rank": k,
                    "rw": float(res.rw),
                    "raw_rw": float(res.atoms.info.get("raw_rw", np.nan)),
                    "natoms": len(res.atoms),
                    "type": typer(res.atoms) if len(res.atoms) > 1 else "",
                }
                for k, res in enumerate(results, 1)
            ]
            rec = {
                "case": name,
                "generator": gen_name,
                "propose_s": t_propose,
                "solve_s": t_solve,
                "ranked": ranked,
            }
            if truth is not None:
                rec["true_natoms"] = len(truth)
                rec["true_type"] = truth.info.get("structure_type")
                rec["typer_true_type"] = typer(truth)
            out.append(rec)
    return out


def format_summary(summary, key, name="generator"):
    """Text table of :func:`summarise` output, grouped by `key` ("type",
    "size_bin" or "extent"); the first column, headed `name`, is as wide
    as its longest entry."""
    width = max(len(name), *(len(label) for label in summary))
    lines = []
    head = (
        f"{name:<{width}} {key:<14} {'cases':>5} {'raw Rw':>7} "
        f"{'raw .005':>8} {'ref. Rw':>7} {'noise Rw':>8} {'N±10%':>6} "
        f"{'type ok':>7} {'prop s':>6} {'solve s':>7}"
    )
    lines.append(head)
    lines.append("-" * len(head))
    for generator, entry in summary.items():
        groups = dict(entry.get(key, {})) if key != "all" else {}
        groups["all"] = entry["all"]
        for label, st in groups.items():
            lines.append(
                f"{generator:<{width}} {label:<14} {st['cases']:>5} "
                f"{st['median_raw_rw']:>7.3f} "
                f"{st.get('median_raw_rw_uiso_005', float('nan')):>8.3f} "
                f"{st.get('median_refined_rw', float('nan')):>7.3f} "
                f"{st.get('median_noise_rw', float('nan')):>8.3f} "
                f"{st['count_within_10pct']:>6.2f} "
                f"{st['type_correct']:>7.2f} "
                f"{st['median_propose_s']:>6.2f} "
                f"{st.get('median_solve_s', float('nan')):>7.1f}"
            )
    return "\n".join(lines)


def format_ranked(records, top=3):
    """Text listing of :func:`solve_cases` output, `top` per case."""
    lines = []
    for rec in records:
        truth = ""
        if "true_type" in rec:
            truth = (
                f" (truth: {rec['true_type']}, {rec['true_natoms']} atoms;"
                f" typer reads the truth as {rec['typer_true_type']})"
            )
        lines.append(
            f"{rec['case']} / {rec['generator']}: propose "
            f"{rec['propose_s']:.2f} s, solve {rec['solve_s']:.1f} s{truth}"
        )
        for c in rec["ranked"][:top]:
            lines.append(
                f"    #{c['rank']}: Rw {c['rw']:.3f} (raw {c['raw_rw']:.3f})"
                f", {c['natoms']} atoms, {c['type']}"
            )
    return "\n".join(lines)


def run_evaluation(
    data,
    *,
    weights=None,
    per_type=10,
    n=10,
    seed=0,
    library=True,
    cbldm=True,
    noiseless=False,
    count_given=False,
    shared=None,
    out=None,
    echo=print,
    site_moves=None,
    site_count_window=None,
):
    """The full evaluation (``cbldm evaluate``, ``benchmarks/evaluate.py``).

    Parameters
    ----------
    data : path
        The training set: its test split is evaluated, its training
        split is the library and the typer's reference.
    weights : str, optional
        CbLDM weights name or folder (default weights when None).
    per_type, n, seed
        Cases per structure type, candidates per case, seed.
    library : bool
        Evaluate :class:`~diffpy_cbldm.library.LibraryGenerator`.
    cbldm : bool
        Evaluate :class:`~diffpy_cbldm.generator.CbLDMGenerator`. The two
        can run in separate processes (same `per_type` and `seed`, so the
        same cases) and be joined with :func:`merge_results`.
    noiseless : bool
        Give the test PDFs without their stored noise (:func:`case_data`):
        what the generators do when noise does not limit the fit. The
        reference and experimental PDFs, which do not change, are then
        skipped.
    count_given : bool
        Tell CbLDM each test case's true atom count (:func:`evaluate`);
        not with `library`. The reference and experimental PDFs are then
        skipped.
    shared : path, optional
        ``shared/data`` folder with ``diffpy-reference/`` and
        ``experimental/``; skipped when None or missing.
    out : path, optional
        Write the results as JSON there (atomically).
    echo : callable
        Receives the printed tables.
    site_moves, site_count_window : optional
        The site refinement's settings for every case
        (:func:`~diffpy_cbldm.generator.refine_candidates`; its defaults
        when None), recorded in the results.

    Returns
    -------
    dict
    """
    from pathlib import Path

    from diffpy_cbldm.atomic import write_json
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.generator import CbLDMGenerator
    from diffpy_cbldm.library import LibraryGenerator
    from diffpy_cbldm.pdf.datafile import load_pdf

    if not (cbldm or library):
        raise ValueError("nothing to evaluate: cbldm and library both off")
    if count_given and library:
        raise ValueError(
            "count_given evaluates CbLDM alone (library=False, "
            "--no-library): the library of training shapes may hold no "
            "cluster of a test case's count"
        )
    started = time.perf_counter()
    site = {"site_moves": site_moves, "site_count_window": site_count_window}
    gens = {}
    if cbldm:
        gens["cbldm"] = CbLDMGenerator.from_pretrained(weights, "cpu")
    if library:
        t0 = time.perf_counter()
        gens["library"] = LibraryGenerator(data)
        echo(
            f"library: {len(gens['library'])} training shapes, loaded in "
            f"{time.perf_counter() - t0:.1f} s"
        )
    ds = open_dataset(data)
    typer = StructureTyper(ds, ds.split_indices("train"))
    rows = select_cases(ds, "test", per_type, seed=seed)
    echo(
        f"test split: {len(rows)} cases, n = {n}"
        + (", PDFs without their noise" if noiseless else "")
        + (", true atom count given" if count_given else "")
    )
    records = evaluate(
        gens,
        ds,
        rows,
        typer=typer,
        n=n,
        seed=seed,
        noiseless=noiseless,
        count_given=count_given,
        **site,
    )
    summary = summarise(records)
    echo_summary(summary, echo)

    reference, experimental = [], []
    shared = None if shared is None else Path(shared)
    if noiseless or count_given:
        echo(
            f"\n{'noiseless' if noiseless else 'count-given'} run: the "
            "reference and experimental PDFs (unchanged) are skipped"
        )
    elif shared is not None and shared.is_dir():
        cases = reference_cases(shared / "diffpy-reference")
        reference = solve_cases(
            gens, cases, typer=typer, n=n, seed=seed, **site
        )
        exp = [
            (p.stem, load_pdf(p), None)
            for p in sorted((shared / "experimental").glob("*.gr"))
        ]
        experimental = solve_cases(
            gens,
            exp,
            typer=typer,
            n=n,
            seed=seed,
            rmax=EXPERIMENTAL_RMAX,
            **site,
        )
        echo_solved(reference, experimental, echo)
    else:
        echo(
            f"\nno shared data folder ({shared}): reference and "
            "experimental PDFs skipped"
        )
    result = {
        "args": {
            "data": str(data),
            "weights": weights,
            "per_type": per_type,
            "n": n,
            "seed": seed,
            "library": library,
            "cbldm": cbldm,
            "noiseless": noiseless,
            "count_given": count_given,
        },
        "site_refinement": site_refinement_settings(**site),
        "weights": gens["cbldm"].name if cbldm else None,
        "weights_data_hash": (
            gens["cbldm"].manifest.get("data_hash") if cbldm else None
        ),
        "summary": summary,
        "records": records,
        "reference": reference,
        "experimental": experimental,
        "wall_s": time.perf_counter() - started,
        "machine": machine_record(),
    }
    if out is not None:
        write_json(out, result)
        echo(f"\nwrote {out} ({result['wall_s']:.0f} s)")
    return result


def merge_results(results, echo=print):
    """Join evaluations of different generators on the same cases.

    Parameters
    ----------
    results : sequence of dict
        :func:`run_evaluation` outputs (e.g. CbLDM and library screening
        run in two processes with the same data, `per_type` and seed).
    echo : callable
        Receives the tables.

    Returns
    -------
    dict
        One result with the records of all, summarised together.
    """
    results = list(results)
    if not results:
        raise ValueError("no evaluation results to merge")
    # The same cases, and CbLDM told the true counts in all or none (a
    # library run never is: run_evaluation refuses count_given with it).
    keys = ("data", "per_type", "n", "seed", "noiseless", "count_given")

    def cases(res):
        # Results from before these options had noisy PDFs and no count.
        args = dict({"noiseless": False, "count_given": False}, **res["args"])
        return {
            k: bool(args[k]) if k == "count_given" else args[k] for k in keys
        }

    first = cases(results[0])
    for res in results[1:]:
        other = cases(res)
        if other != first:
            raise ValueError(
                f"cannot merge evaluations of different cases: {first} "
                f"and {other}"
            )
    merged = dict(results[0])
    for key in ("records", "reference", "experimental"):
        merged[key] = [item for res in results for item in res[key]]
    for key in ("weights", "weights_data_hash"):
        merged[key] = next((r[key] for r in results if r[key]), None)
    merged["args"] = dict(first, library=True, cbldm=True)
    merged["wall_s"] = max(r["wall_s"] for r in results)
    merged["machines"] = [r["machine"] for r in results]
    merged["summary"] = summarise(merged["records"])
    echo_summary(merged["summary"], echo)
    echo_solved(merged["reference"], merged["experimental"], echo)
    return merged


def echo_summary(summary, echo=print):
    """Print :func:`summarise` output per structure type, size bin and
    extent."""
    echo(format_summary(summary, "type"))
    echo("")
    echo(format_summary(summary, "size_bin"))
    echo("")
    echo(format_summary(summary, "extent"))


def echo_solved(reference, experimental, echo=print):
    """Print :func:`solve_cases` output for the reference PDFs (top 1)
    and the measured ones (top 3)."""
    echo("\nDiffPy reference PDFs (top-ranked refined candidate):")
    echo(format_ranked(reference, top=1))
    echo("\nExperimental PDFs (three best refined candidates):")
    echo(format_ranked(experimental, top=3))
