"""Build the (structure, PDF) training set: plan, compute in chunks,
assemble one HDF5 file.

The build is deterministic for a seed, whatever the number of worker
processes: every random choice comes from a generator seeded by
``SeedSequence(seed, spawn_key=(purpose, index))``, and every structure's
PDFs are computed on their own, one torch thread per process.

It is atomic and resumable: finished chunks of structures are written,
each atomically, into the sibling folder ``OUT.parts/``; a rerun after an
interruption reuses them; the final file appears only once complete and
the folder is then removed.
"""

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffpy_cbldm.atomic import atomic_path
from diffpy_cbldm.dataset.acquisition import (
    OUTPUT_GRID,
    AcquisitionRanges,
    draw_settings,
    output_rgrid,
)
from diffpy_cbldm.dataset.store import (
    FORMAT,
    FORMAT_VERSION,
    PAD_ATOMS,
    RANDOM_SPLITS,
    SETTINGS_COLUMNS,
    SIZE_BINS,
    SPLITS,
    write_training_set,
)

__all__ = [
    "DEFAULT_DRAWS_PER_STRUCTURE",
    "DEFAULT_METALS_PER_SHAPE",
    "FAMILY_BUFFER",
    "FAMILY_WINDOW",
    "MIN_SHAPES_FOR_SHAPE_SPLIT",
    "SPLIT_FRACTIONS",
    "build_dataset",
]

logger = logging.getLogger(__name__)

DEFAULT_METALS_PER_SHAPE = 3
DEFAULT_DRAWS_PER_STRUCTURE = 2
DEFAULT_CHUNK_SIZE = 64
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)
RANDOM_VAL_FRACTION = 0.05
# A split by shape puts round(0.05 n) shapes into val and into test; below
# 40 shapes that is one shape or none, so such types are split by metal.
MIN_SHAPES_FOR_SHAPE_SPLIT = 40
# Icosahedra and octahedra with an incomplete outer shell are one parent
# cluster grown atom by atom (ClusterShape.family): shapes a few atoms
# apart have nearly the same PDF. A family is held out in windows of
# FAMILY_WINDOW consecutive atom counts, and its train shapes within
# FAMILY_BUFFER atoms of a held-out one are left out of the data set
# (benchmarks/split_relatives.py measures what is left of the likeness).
FAMILY_WINDOW = 10
FAMILY_BUFFER = 5
# The engine's dtype: PDFs are computed in float64, stored in float32.
ENGINE_DTYPE = "float64"
# Pair sum of the Debye engine: "direct" up to this many atom pairs (78
# atoms), "histogram" above; each is the faster one there when every PDF
# has its own settings (docs/user_dataset.rst), and they agree to 1e-5.
DIRECT_MAX_PAIRS = 3000

# c/a of hcp clusters, drawn uniformly per structure around the ideal
# 1.633: the hcp metals of METALS lie at 1.58-1.62 (Zn and Cd, 1.86-1.89,
# are left out: their clusters are better described as distorted).
HCP_COVERA_RANGE = (1.57, 1.70)

# spawn_key purposes, so that no two random choices share a stream.
_METAL_KEY, _ACQUISITION_KEY, _SPLIT_KEY, _HOLD_OUT_KEY = 0, 1, 2, 3
_COVERA_KEY = 4


@dataclass(frozen=True)
class _Plan:
    """What the build will compute: one entry per structure."""

    shapes: list  # ClusterShape per shape index
    shape_index: np.ndarray  # (n,) int
    element: list  # (n,) str
    nn_distance: np.ndarray  # (n,) float, Å
    covera: np.ndarray  # (n,) float, drawn c/a of hcp, NaN otherwise
    split: np.ndarray  # (n,) uint8 code into SPLITS
    split_random: np.ndarray  # (n,) uint8 code into RANDOM_SPLITS
    split_by_type: dict  # type -> "shape" | "metal"
    held_out_metals: dict  # "val"/"test" -> [element]
    left_out: dict  # type -> shapes left out as a buffer
    metals: dict  # element -> NN distance, Å

    def __len__(self):
        return len(self.element)


def build_dataset(
    out,
    *,
    types=None,
    max_atoms=256,
    min_atoms=5,
    workers=None,
    seed=42,
    metals_per_shape=DEFAULT_METALS_PER_SHAPE,
    draws_per_structure=DEFAULT_DRAWS_PER_STRUCTURE,
    ranges=None,
    chunk_size=DEFAULT_CHUNK_SIZE,
    overwrite=False,
    progress=True,
):
    """Build a training set of clusters and their PDFs into one HDF5 file.

    Every cluster shape of `types` with `min_atoms` to `max_atoms` atoms
    is scaled to the nearest-neighbour distances of several real metals,
    put in canonical atom order, and given `draws_per_structure` PDFs,
    each with acquisition settings and noise drawn from `ranges` (see
    :mod:`diffpy_cbldm.dataset.acquisition`).

    Parameters
    ----------
    out : path-like
        The .h5 file to write. Its folder must exist and be writable.
    types : sequence of str, optional
        Structure types, default all of
        ``diffpy_cbldm.clusters.build.STRUCTURE_TYPES``.
    max_atoms, min_atoms : int
        Atom-count range, within 5-256.
    workers : int, optional
        Worker processes; default all cores. The result does not depend
        on it.
    seed : int
        Seed of every random choice (metals, settings, noise, splits).
    metals_per_shape : int
        Metals per shape for types split by shape, drawn one from each of
        `metals_per_shape` groups of metals ordered by nearest-neighbour
        distance. Types with fewer than ``MIN_SHAPES_FOR_SHAPE_SPLIT``
        shapes use every metal and are split by metal instead.
    draws_per_structure : int
        PDFs per structure, each with its own settings and noise.
    ranges : AcquisitionRanges, optional
        Where settings are drawn from; default ``AcquisitionRanges()``.
    chunk_size : int
        Structures per chunk file: the unit of work and of resuming.
    overwrite : bool
        Replace `out` if it exists.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    pathlib.Path
        `out`.

    Raises
    ------
    ValueError
        For unknown types or out-of-range numbers.
    FileExistsError
        When `out` exists and `overwrite` is false.
    FileNotFoundError, PermissionError
        When the folder of `out` is missing or not writable; raised
        before any work.
    """
    from diffpy_cbldm.clusters.build import STRUCTURE_TYPES

    types = _check_types(types, STRUCTURE_TYPES)
    _check_int("max_atoms", max_atoms, 5, PAD_ATOMS)
    _check_int("min_atoms", min_atoms, 5, PAD_ATOMS)
    if min_atoms > max_atoms:
        raise ValueError(
            f"min_atoms={min_atoms} is larger than max_atoms={max_atoms}"
        )
    if workers is None:
        workers = _available_cores()
    _check_int("workers", workers, 1, None)
    _check_int("seed", seed, 0, None)
    _check_int("metals_per_shape", metals_per_shape, 1, None)
    _check_int("draws_per_structure", draws_per_structure, 1, None)
    _check_int("chunk_size", chunk_size, 1, None)
    ranges = AcquisitionRanges() if ranges is None else ranges
    if not isinstance(ranges, AcquisitionRanges):
        raise ValueError(
            f"ranges must be an AcquisitionRanges, got {type(ranges)}"
        )
    out = Path(out)
    parts = _check_output(out, overwrite)

    plan = _make_plan(
        types,
        min_atoms,
        max_atoms,
        metals_per_shape,
        seed,
        STRUCTURE_TYPES,
        progress,
    )
    if len(plan) == 0:
        raise ValueError(
            f"no cluster of types {types} has {min_atoms}-{max_atoms} atoms"
        )
    build = {
        "types": list(types),
        "min_atoms": min_atoms,
        "max_atoms": max_atoms,
        "metals_per_shape": metals_per_shape,
        "draws_per_structure": draws_per_structure,
    }
    manifest = _manifest(plan, build, seed, ranges, STRUCTURE_TYPES)
    fingerprint = _fingerprint(plan, manifest, chunk_size)

    n_chunks = -(-len(plan) // chunk_size)
    parts.mkdir(exist_ok=True)
    done = _reusable_chunks(parts, fingerprint, n_chunks)
    if done:
        logger.info("reusing %d finished chunks in %s", len(done), parts)
    tasks = [
        _chunk_task(plan, c, chunk_size, draws_per_structure, seed, ranges)
        for c in range(n_chunks)
        if c not in done
    ]
    _compute_chunks(
        tasks,
        parts,
        fingerprint,
        workers,
        progress,
        len(plan),
        done,
        chunk_size,
    )

    blocks = (
        _assemble_block(plan, parts, c, chunk_size) for c in range(n_chunks)
    )
    digest = write_training_set(
        out,
        blocks,
        n_structures=len(plan),
        n_draws=draws_per_structure,
        n_r=output_rgrid().size,
        shape_id_len=max(len(_shape_id(s)) for s in plan.shapes),
        attrs={
            "structure_type": {"names": list(STRUCTURE_TYPES)},
            "pdf_settings": {"columns": list(SETTINGS_COLUMNS)},
            "split": {"names": list(SPLITS)},
            "split_random": {"names": list(RANDOM_SPLITS)},
        },
        manifest=manifest,
    )
    shutil.rmtree(parts)
    logger.info("wrote %s (content sha256 %s)", out, digest)
    return out


# -- checks --------------------------------------------------------------


def _check_types(types, valid):
    if types is None:
        return tuple(valid)
    if isinstance(types, str):
        types = (types,)
    types = tuple(str(t).lower() for t in types)
    unknown = [t for t in types if t not in valid]
    if unknown:
        raise ValueError(
            f"unknown structure types {unknown}; valid types are "
            f"{', '.join(valid)}"
        )
    if not types:
        raise ValueError(
            f"no structure types given; valid types are {', '.join(valid)}"
        )
    # The order of STRUCTURE_TYPES, without repeats, so that the same set
    # of types always gives the same dataset.
    return tuple(t for t in valid if t in types)


def _available_cores():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        span = f"{low}-{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name}={value} is outside {span}")


def _check_output(out, overwrite):
    """Fail early on an output that cannot be written; return OUT.parts."""
    if out.is_dir():
        raise IsADirectoryError(f"output {out} is a folder, not a file")
    if out.exists() and not overwrite:
        raise FileExistsError(
            f"output {out} exists; pass overwrite=True (--overwrite) to "
            "replace it"
        )
    folder = out.parent
    if not folder.is_dir():
        raise FileNotFoundError(
            f"cannot write {out}: folder {folder} does not exist"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", dir=folder)
    except OSError as exc:
        raise PermissionError(
            f"cannot write {out}: folder {folder} is not writable ({exc})"
        ) from None
    os.close(fd)
    os.unlink(probe)
    parts = out.with_name(out.name + ".parts")
    if parts.exists() and not parts.is_dir():
        raise FileExistsError(
            f"{parts} exists and is not the parts folder of a build"
        )
    return parts


# -- plan ----------------------------------------------------------------


def _rng(seed, *key):
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _shape_id(shape):
    return str(shape.shape_id)


def _sorted_metals():
    """Metals as (element, NN distance in Å), ordered by NN distance."""
    from diffpy_cbldm.clusters.build import METALS

    metals = {el: float(metal.nn) for el, metal in METALS.items()}
    return sorted(metals.items(), key=lambda item: (item[1], item[0]))


def _make_plan(
    types, min_atoms, max_atoms, metals_per_shape, seed, names, progress
):
    from diffpy_cbldm.clusters.build import enumerate_shapes

    shapes = list(
        enumerate_shapes(
            types, min_atoms=min_atoms, max_atoms=max_atoms, progress=progress
        )
    )
    metals = _sorted_metals()
    if len(metals) < 4:
        raise ValueError(
            f"need at least 4 metals to hold some out, METALS has "
            f"{len(metals)}"
        )
    by_type = {
        t: [i for i, s in enumerate(shapes) if s.stype == t] for t in types
    }
    split_by_type = {
        t: "shape" if len(idx) >= MIN_SHAPES_FOR_SHAPE_SPLIT else "metal"
        for t, idx in by_type.items()
        if idx
    }

    # Metals held out for the types split by metal scale: interior ones,
    # so that val and test interpolate in NN distance.
    n_hold = max(1, round(SPLIT_FRACTIONS[2] * len(metals)))
    interior = [el for el, _ in metals[1:-1]]
    chosen = _rng(seed, _HOLD_OUT_KEY).choice(
        len(interior), size=2 * n_hold, replace=False
    )
    held_out = {
        "val": sorted(interior[k] for k in chosen[:n_hold]),
        "test": sorted(interior[k] for k in chosen[n_hold:]),
    }

    shape_split = np.zeros(len(shapes), dtype=np.uint8)
    for code, t in enumerate(names):
        idx = by_type.get(t, [])
        if split_by_type.get(t) != "shape":
            continue
        shape_split[idx] = _split_shapes(
            [shapes[i] for i in idx], _rng(seed, _SPLIT_KEY, code)
        )
    left_out = _buffer(shapes, shape_split)

    groups = np.array_split(np.arange(len(metals)), metals_per_shape)
    groups = [g for g in groups if g.size]
    shape_index, element, nn, split = [], [], [], []
    for s, shape in enumerate(shapes):
        if left_out[s]:
            continue
        if split_by_type[shape.stype] == "metal" or metals_per_shape >= len(
            metals
        ):
            picks = range(len(metals))
        else:
            rng = _rng(seed, _METAL_KEY, s)
            picks = [int(g[rng.integers(g.size)]) for g in groups]
        for m in picks:
            el, distance = metals[m]
            shape_index.append(s)
            element.append(el)
            nn.append(distance)
            if split_by_type[shape.stype] == "shape":
                split.append(shape_split[s])
            else:
                split.append(
                    2
                    if el in held_out["test"]
                    else (1 if el in held_out["val"] else 0)
                )
    n = len(element)
    covera = np.full(n, np.nan)
    for i, s in enumerate(shape_index):
        if shapes[s].stype == "hcp":
            covera[i] = _rng(seed, _COVERA_KEY, i).uniform(*HCP_COVERA_RANGE)
    split_random = np.zeros(n, dtype=np.uint8)
    n_val = round(RANDOM_VAL_FRACTION * n)
    split_random[np.random.default_rng(seed).permutation(n)[:n_val]] = 1
    return _Plan(
        shapes=shapes,
        shape_index=np.asarray(shape_index, dtype=np.int32),
        element=element,
        nn_distance=np.asarray(nn, dtype=float),
        covera=covera,
        split=np.asarray(split, dtype=np.uint8),
        split_random=split_random,
        split_by_type=split_by_type,
        held_out_metals=held_out,
        left_out={
            t: int(left_out[idx].sum()) for t, idx in by_type.items() if idx
        },
        metals=dict(metals),
    )


def _split_shapes(shapes, rng):
    """Split codes (0 train, 1 val, 2 test) of the shapes of one type.

    Shapes are held out in units: the shapes of one family whose atom
    counts share ``natoms // FAMILY_WINDOW``. A shape without relatives
    is a unit of its own, so for such types this is a draw of single
    shapes. Units are taken in random order into test, else into val,
    when that brings the split nearer ``round(0.05 n)`` shapes; a split
    that no unit brings nearer gets the smallest one.
    """
    units = {}
    for i, shape in enumerate(shapes):
        key = (shape.family, shape.natoms // FAMILY_WINDOW)
        units.setdefault(key, []).append(i)
    units = list(units.values())
    # codes index SPLIT_FRACTIONS (train, val, test)
    wanted = {
        code: max(1, round(SPLIT_FRACTIONS[code] * len(shapes)))
        for code in (2, 1)
    }
    held = {2: 0, 1: 0}
    codes = np.zeros(len(shapes), dtype=np.uint8)
    for k in rng.permutation(len(units)):
        size = len(units[k])
        for code in (2, 1):
            if abs(held[code] + size - wanted[code]) < abs(
                held[code] - wanted[code]
            ):
                codes[units[k]] = code
                held[code] += size
                break
    # Units all larger than twice a split's share leave it empty: hold
    # out the smallest free unit then, while one stays for training.
    for code in (2, 1):
        free = [u for u in units if not codes[u].any()]
        if held[code] == 0 and len(free) > 1:
            smallest = min(free, key=len)
            codes[smallest] = code
            held[code] += len(smallest)
    return codes


def _buffer(shapes, split):
    """Whether each train shape has a held-out relative near in count.

    A relative is a shape of the same family; near is within
    ``FAMILY_BUFFER`` atoms.
    """
    held = {}
    for shape, code in zip(shapes, split):
        if code:
            held.setdefault(shape.family, []).append(shape.natoms)
    return np.array(
        [
            code == 0
            and any(
                abs(shape.natoms - n) <= FAMILY_BUFFER
                for n in held.get(shape.family, ())
            )
            for shape, code in zip(shapes, split)
        ],
        dtype=bool,
    )


def _manifest(plan, build, seed, ranges, names):
    import ase
    import scipy
    import torch

    import diffpy_cbldm
    from diffpy_cbldm.clusters.laplacian import DEFAULT_SIGMA, MAX_ATOMS
    from diffpy_cbldm.clusters.order import ORDERING_RULE

    r = output_rgrid()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": diffpy_cbldm.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        # ASE builds the clusters, scipy draws the noise (its DST).
        "ase_version": ase.__version__,
        "scipy_version": scipy.__version__,
        "engine": {
            "name": "diffpy_cbldm.pdf.debye.DebyePDFCalculator",
            "dtype": ENGINE_DTYPE,
            "stored_dtype": "float32",
            "method": f"direct up to {DIRECT_MAX_PAIRS} atom pairs, "
            "histogram above",
            "input": "positions as stored (float32), atomic numbers of "
            "element, Biso of each PDF for every atom",
        },
        "seed": seed,
        "build": build,
        "rgrid": dict(OUTPUT_GRID, npoints=int(r.size)),
        "laplacian": {
            "sigma": float(DEFAULT_SIGMA),
            "size": int(MAX_ATOMS),
            "stored": False,
            "note": "Laplacians are not stored; compute them on the fly "
            "from positions[:natoms] with diffpy_cbldm.clusters.laplacian",
        },
        "ordering_rule": ORDERING_RULE,
        "pad_atoms": PAD_ATOMS,
        "structure_types": list(names),
        "metals": plan.metals,
        "hcp_covera_range": list(HCP_COVERA_RANGE),
        "acquisition_ranges": ranges.to_dict(),
        "noise_model": "white Gaussian noise on F(Q), weighted by Q, "
        "between qmin and qmax, sine-transformed onto the r-grid; rms "
        "over the grid = noise_level * max|G|; pdf_noise(r, qmin, qmax, "
        "noise_seed) regenerates it",
        "size_bins": [list(b) for b in SIZE_BINS],
        "splits": {
            "split": {
                "names": list(SPLITS),
                "fractions": list(SPLIT_FRACTIONS),
                "by_type": plan.split_by_type,
                "held_out_metals": plan.held_out_metals,
                "min_shapes_for_shape_split": MIN_SHAPES_FOR_SHAPE_SPLIT,
                "family_window": FAMILY_WINDOW,
                "family_buffer": FAMILY_BUFFER,
                "rule": "shapes held out in units: one family's shapes "
                "with the same natoms // family_window (a shape without "
                "relatives alone); train shapes within family_buffer "
                "atoms of a held-out relative are left out",
                "left_out_shapes": plan.left_out,
            },
            "split_random": {
                "names": list(RANDOM_SPLITS),
                "fractions": [1 - RANDOM_VAL_FRACTION, RANDOM_VAL_FRACTION],
                "rule": "numpy.random.default_rng(seed).permutation over "
                "structures, first 5 % val (the paper's split)",
            },
        },
    }


def _fingerprint(plan, manifest, chunk_size):
    """Hash of everything the chunk files depend on."""
    content = {
        "manifest": manifest,
        "chunk_size": chunk_size,
        "structures": [
            [_shape_id(plan.shapes[s]), el]
            for s, el in zip(plan.shape_index.tolist(), plan.element)
        ],
    }
    text = json.dumps(content, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# -- chunks --------------------------------------------------------------


def _chunk_path(parts, c):
    return parts / f"chunk-{c:05d}.npz"


def _chunk_task(plan, c, chunk_size, draws, seed, ranges):
    rows = range(c * chunk_size, min((c + 1) * chunk_size, len(plan)))
    structures = [
        (
            i,
            plan.shapes[plan.shape_index[i]],
            plan.element[i],
            float(plan.nn_distance[i]),
            float(plan.covera[i]),
        )
        for i in rows
    ]
    return c, structures, draws, seed, ranges


def _reusable_chunks(parts, fingerprint, n_chunks):
    """Indices of chunk files in `parts` from this very build plan."""
    plan_file = parts / "plan.json"
    previous = None
    if plan_file.is_file():
        with contextlib.suppress(ValueError, OSError):
            previous = json.loads(plan_file.read_text()).get("fingerprint")
    if previous != fingerprint:
        stale = sorted(parts.glob("chunk-*.npz"))
        if stale:
            logger.warning(
                "removing %d chunks of a different build from %s",
                len(stale),
                parts,
            )
        for path in stale:
            path.unlink()
        with atomic_path(plan_file) as tmp:
            tmp.write_text(json.dumps({"fingerprint": fingerprint}))
        return set()
    done = set()
    for c in range(n_chunks):
        path = _chunk_path(parts, c)
        if path.is_file() and _chunk_is_valid(path, fingerprint):
            done.add(c)
    return done


def _chunk_is_valid(path, fingerprint):
    try:
        with np.load(path) as chunk:
            return str(chunk["fingerprint"]) == fingerprint
    except (OSError, ValueError, KeyError):
        return False


def _compute_chunks(
    tasks, parts, fingerprint, workers, progress, total, done, chunk_size
):
    from tqdm.auto import tqdm

    initial = min(total, len(done) * chunk_size)
    bar = tqdm(
        total=total,
        initial=initial,
        desc="dataset",
        unit="structure",
        disable=not progress,
    )
    jobs = [(task, str(parts), fingerprint) for task in tasks]
    with bar:
        if workers == 1 or len(jobs) <= 1:
            with _single_torch_thread():
                for job in jobs:
                    bar.update(_compute_chunk(job))
        else:
            import multiprocessing

            context = multiprocessing.get_context("spawn")
            with context.Pool(
                min(workers, len(jobs)), initializer=_init_worker
            ) as pool:
                for n in pool.imap_unordered(_compute_chunk, jobs):
                    bar.update(n)


@contextlib.contextmanager
def _single_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _init_worker():
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _compute_chunk(job):
    """Build, order and compute the PDFs of one chunk; write it."""
    import torch

    from diffpy_cbldm.clusters.order import canonicalize
    from diffpy_cbldm.pdf.debye import DebyePDFCalculator

    (c, structures, draws, seed, ranges), parts, fingerprint = job
    n = len(structures)
    n_r = output_rgrid().size
    positions = np.zeros((n, PAD_ATOMS, 3), dtype=np.float32)
    natoms = np.zeros(n, dtype=np.int16)
    pdf = np.zeros((n, draws, n_r), dtype=np.float32)
    table = np.zeros((n, draws, len(SETTINGS_COLUMNS)))
    noise_seed = np.zeros((n, draws), dtype=np.uint32)
    covera = np.full(n, np.nan)
    dtype = getattr(torch, ENGINE_DTYPE)
    for k, (i, shape, element, nn, hcp_covera) in enumerate(structures):
        atoms, covera[k] = _build_cluster(shape, element, nn, hcp_covera)
        atoms = canonicalize(atoms)
        positions[k, : len(atoms)] = atoms.get_positions()
        natoms[k] = len(atoms)
        # The PDF of the coordinates as stored (float32), so that the two
        # agree exactly.
        xyz = positions[k, : len(atoms)]
        xyz_t = torch.as_tensor(xyz).to(dtype)[None]
        numbers = torch.as_tensor(atoms.numbers)[None]
        mask = torch.ones(numbers.shape, dtype=torch.bool)
        rng = _rng(seed, _ACQUISITION_KEY, i)
        pairs = len(atoms) * (len(atoms) - 1) // 2
        method = "direct" if pairs <= DIRECT_MAX_PAIRS else "histogram"
        for d in range(draws):
            acquisition = draw_settings(rng, ranges)
            calc = DebyePDFCalculator.from_settings(
                acquisition.settings, dtype=dtype, method=method
            )
            with torch.no_grad():
                g = calc.compute(xyz_t, numbers, mask)[0].numpy()
            noisy, sigma = acquisition.add_noise(g)
            s = acquisition.settings
            pdf[k, d] = noisy
            table[k, d] = (
                s.qmin,
                s.qmax,
                s.qdamp,
                s.qbroad,
                s.biso,
                s.delta2,
                s.scale,
                acquisition.noise_level,
                sigma,
            )
            noise_seed[k, d] = acquisition.noise_seed
    with atomic_path(_chunk_path(Path(parts), c)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                positions=positions,
                natoms=natoms,
                pdf=pdf,
                pdf_settings=table,
                noise_seed=noise_seed,
                covera=covera,
                fingerprint=np.array(fingerprint),
            )
    return n


def _build_cluster(shape, element, nn, covera):
    """The cluster of `shape`, hcp ones at c/a `covera` (the cut's atoms
    are chosen at the ideal c/a and then stretched, so every cut keeps
    its atoms); returns (atoms, c/a used or NaN)."""
    from diffpy_cbldm.clusters.build import ClusterShape

    if shape.stype != "hcp":
        return shape.build(element=element, nn=nn), np.nan
    params = dict(shape.params, covera=covera)
    variant = ClusterShape(
        shape.stype, shape.builder, tuple(params.items()), shape.natoms
    )
    return variant.build(element=element, nn=nn), covera


def _assemble_block(plan, parts, c, chunk_size):
    from diffpy_cbldm.clusters.build import STRUCTURE_TYPES

    rows = slice(c * chunk_size, min((c + 1) * chunk_size, len(plan)))
    with np.load(_chunk_path(parts, c)) as chunk:
        block = {
            name: chunk[name]
            for name in (
                "positions",
                "natoms",
                "pdf",
                "pdf_settings",
                "noise_seed",
                "covera",
            )
        }
    index = plan.shape_index[rows]
    block.update(
        element=np.array(plan.element[rows], dtype="S2"),
        structure_type=np.array(
            [STRUCTURE_TYPES.index(plan.shapes[s].stype) for s in index],
            dtype=np.uint8,
        ),
        shape_index=index,
        shape_id=np.array([_shape_id(plan.shapes[s]).encode() for s in index]),
        nn_distance=plan.nn_distance[rows],
        split=plan.split[rows],
        split_random=plan.split_random[rows],
    )
    return block
