"""Training data in memory: one split of a training set, its batches and
its Laplacians.

A training sample is a pair (structure, PDF draw): each structure of the
set carries ``D`` PDFs (acquisition settings and noise drawn per PDF). A
training epoch visits every structure once, with one draw chosen at
random per epoch; validation uses every pair. A pair is addressed by the
integer ``code = structure * D + draw``.

The data order of epoch ``e`` is a function of ``(seed, e)`` only
(:class:`torch.utils.data.DistributedSampler` and a numpy generator
seeded with both), so a resumed run replays it without stored state.
"""

import logging

import numpy as np

__all__ = [
    "PairDataset",
    "SplitArrays",
    "epoch_batches",
    "laplacian_batch",
    "load_split",
    "median_nn_peak",
    "structure_type_codes",
    "validation_batches",
]

logger = logging.getLogger(__name__)

# spawn_key purpose of the per-epoch PDF draw, apart from anything else
# seeded with the stage's seed.
_DRAW_KEY = 7


class SplitArrays:
    """The arrays of one split of a training set, in memory.

    Attributes
    ----------
    rows : numpy.ndarray of int, shape (n,)
        Rows of these structures in the training-set file.
    positions : torch.Tensor, float32, shape (n, 256, 3)
        Coordinates in Å, canonical order, zero padded.
    natoms : torch.Tensor, int64, shape (n,)
    pdf : torch.Tensor, float32, shape (n, D, 3000)
        PDFs normalised by the run's conventions
        (:func:`diffpy_cbldm.conventions.normalise_pdf`).
    n_draws : int
        PDFs per structure, ``D``.
    """

    def __init__(self, rows, positions, natoms, pdf):
        self.rows = rows
        self.positions = positions
        self.natoms = natoms
        self.pdf = pdf
        self.n_draws = int(pdf.shape[1])

    def __len__(self):
        return len(self.rows)

    @property
    def n_pairs(self):
        return len(self) * self.n_draws


def load_split(dataset, split, scheme, conventions):
    """Read the structures of one split into memory.

    Parameters
    ----------
    dataset : diffpy_cbldm.dataset.store.TrainingSet
    split : {"train", "val", "test"}
    scheme : {"shape", "random"}
        See :meth:`TrainingSet.split_indices`.
    conventions : diffpy_cbldm.conventions.Conventions
        Normalisation of the PDFs.

    Returns
    -------
    SplitArrays

    Raises
    ------
    ValueError
        When the split holds no structure.
    """
    import torch

    from diffpy_cbldm.conventions import normalise_pdf

    rows = dataset.split_indices(split, scheme=scheme)
    if rows.size == 0:
        raise ValueError(
            f"training set {dataset.path} has no structure in the "
            f"{scheme} split {split!r}"
        )
    positions = dataset.array("positions")[rows]
    natoms = dataset.array("natoms")[rows].astype(np.int64)
    pdf = dataset.array("pdf")[rows]
    n, draws, npoints = pdf.shape
    flat = torch.as_tensor(pdf.reshape(n * draws, npoints))
    pdf = normalise_pdf(flat, conventions).reshape(n, draws, npoints)
    return SplitArrays(
        rows=rows,
        positions=torch.as_tensor(positions),
        natoms=torch.as_tensor(natoms),
        pdf=pdf.to(torch.float32).contiguous(),
    )


class PairDataset:
    """Map-style dataset over pair codes, for a ``DataLoader``.

    Item ``code`` is a dict: every per-structure tensor indexed by
    ``code // D`` and every per-pair tensor indexed by ``(code // D, code %
    D)``.

    Parameters
    ----------
    n_draws : int
        ``D``.
    per_structure : dict of str to torch.Tensor
        Tensors with the structure as first axis.
    per_pair : dict of str to torch.Tensor
        Tensors with axes (structure, draw, ...).
    """

    def __init__(self, n_draws, per_structure=None, per_pair=None):
        self.n_draws = int(n_draws)
        self.per_structure = dict(per_structure or {})
        self.per_pair = dict(per_pair or {})
        lengths = {len(t) for t in self.per_structure.values()}
        lengths |= {len(t) for t in self.per_pair.values()}
        if len(lengths) != 1:
            raise ValueError(
                f"tensors of a PairDataset disagree on the number of "
                f"structures: {sorted(lengths)}"
            )
        self.n_structures = lengths.pop()

    def __len__(self):
        return self.n_structures * self.n_draws

    def __getitem__(self, code):
        s, d = divmod(int(code), self.n_draws)
        item = {name: t[s] for name, t in self.per_structure.items()}
        item.update({name: t[s, d] for name, t in self.per_pair.items()})
        return item


def epoch_batches(
    n_structures, n_draws, batch_size, seed, epoch, rank=0, world_size=1
):
    """The batches of pair codes that process `rank` trains on in `epoch`.

    Structures are shuffled by a ``DistributedSampler`` (seed, epoch) and
    shared out between processes; each gets one PDF draw from a numpy
    generator seeded with (seed, epoch), the same in every process.

    Returns
    -------
    list of list of int
        Batches of at most `batch_size` codes; the last may be smaller.
    """
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(n_structures),
        num_replicas=world_size,
        rank=rank,
        shuffle=True,
        seed=seed,
        drop_last=False,
    )
    sampler.set_epoch(epoch)
    structures = np.fromiter(sampler, dtype=np.int64)
    rng = np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(_DRAW_KEY, epoch))
    )
    draws = rng.integers(n_draws, size=n_structures)
    codes = structures * n_draws + draws[structures]
    return [
        codes[k : k + batch_size].tolist()
        for k in range(0, len(codes), batch_size)
    ]


def validation_batches(n_pairs, batch_size, rank=0, world_size=1):
    """Every pair code, shared out between processes without repeats."""
    codes = np.arange(rank, n_pairs, world_size)
    return [
        codes[k : k + batch_size].tolist()
        for k in range(0, len(codes), batch_size)
    ]


def laplacian_batch(positions, natoms, sigma, size):
    """Laplacians ``L = D - W`` of a batch of zero-padded clusters.

    Parameters
    ----------
    positions : torch.Tensor, shape (B, N, 3)
        Coordinates in Å, atoms first, then zero padding.
    natoms : torch.Tensor of int, shape (B,)
    sigma : float
        Gaussian width in Å.
    size : int
        Side of each matrix.

    Returns
    -------
    torch.Tensor, float32, shape (B, size, size)
        Computed on the device of `positions`.
    """
    import torch

    from diffpy_cbldm.clusters.laplacian import laplacian

    atoms = torch.arange(positions.shape[1], device=positions.device)
    mask = atoms[None, :] < natoms.to(positions.device)[:, None]
    return laplacian(
        positions, sigma, size=size, dtype=torch.float32, mask=mask
    )


SITES_PER_CLUSTER = 1024
"""Template sites each cluster's loss sees (:func:`site_targets`)."""

_TEMPLATE_CACHE = {}


def median_nn_peak(pdf, rgrid):
    """Median position in Å of the nearest-neighbour peak over PDFs.

    The exported weights stretch every input PDF so that its peak sits
    here (``Conventions.nn_peak``).

    Parameters
    ----------
    pdf : array_like, shape (..., n_points)
        PDFs on `rgrid`, any normalisation.
    rgrid : array_like, shape (n_points,)

    Returns
    -------
    float

    Raises
    ------
    ValueError
        When a PDF has no nearest-neighbour peak (its index named).
    """
    from diffpy_cbldm.pdf.peaks import first_peak

    flat = np.asarray(pdf).reshape(-1, len(rgrid))
    peaks = np.empty(len(flat))
    for i, g in enumerate(flat):
        try:
            peaks[i] = first_peak(rgrid, g)
        except ValueError as exc:
            raise ValueError(f"training PDF {i}: {exc}") from None
    return float(np.median(peaks))


def structure_type_codes(dataset, rows):
    """Structure types of training-set rows as indices into
    ``STRUCTURE_TYPES``, a long tensor: the stored codes, which
    ``cbldm dataset build`` writes in that order."""
    import torch

    codes = dataset.array("structure_type")[np.asarray(rows)]
    return torch.as_tensor(codes.astype(np.int64))


def _registered_shapes(dataset, rows):
    """Exact template sites of the shapes of `rows`, registered once per
    shape: ``{shape_index: (type index, (n, 3) sites)}``."""
    from diffpy_cbldm.clusters.build import STRUCTURE_TYPES
    from diffpy_cbldm.clusters.templates import register, template_frame

    key = (str(dataset.path), dataset.manifest.get("content_sha256"))
    cache = _TEMPLATE_CACHE.setdefault(key, {})
    shape = dataset.array("shape_index")
    todo = sorted({int(s) for s in shape[rows]} - set(cache))
    if todo:
        first = {}
        for row in np.asarray(rows):
            first.setdefault(int(shape[row]), int(row))
        stype = dataset.array("structure_type")
        covera = dataset.array("covera")
        natoms = dataset.array("natoms")
        for s in todo:
            row = first[s]
            name = STRUCTURE_TYPES[int(stype[row])]
            x = dataset.array("positions", row)[: int(natoms[row])]
            try:
                sites = register(template_frame(x, name, covera[row]), name)[1]
            except ValueError as exc:
                raise ValueError(
                    f"{dataset.path}: structure {row}: {exc}"
                ) from None
            cache[s] = (int(stype[row]), sites)
    return {int(s): cache[int(s)] for s in shape[rows]}


def training_templates(dataset, scheme="shape"):
    """The template of every structure type, from a training split.

    The sites the training split's clusters occupy, plus one shell of
    neighbours (:func:`diffpy_cbldm.clusters.templates.build_templates`);
    a type without training clusters gets the sites within 1.5 NN of its
    origin.

    Returns
    -------
    list of ndarray
        ``(m_t, 3)`` sites in NN units, in ``STRUCTURE_TYPES`` order.
    """
    from diffpy_cbldm.clusters.build import STRUCTURE_TYPES
    from diffpy_cbldm.clusters.templates import build_templates, seed_sites

    rows = dataset.split_indices("train", scheme=scheme)
    occupied = {}
    for t, sites in _registered_shapes(dataset, rows).values():
        occupied.setdefault(STRUCTURE_TYPES[t], []).append(sites)
    built = build_templates(occupied)
    return [
        built.get(name, seed_sites(name, radius=1.5))
        for name in STRUCTURE_TYPES
    ]


def site_targets(dataset, arrays, templates, seed, k=SITES_PER_CLUSTER):
    """Targets of the template decoder for every structure of a split.

    Parameters
    ----------
    dataset : diffpy_cbldm.dataset.store.TrainingSet
    arrays : SplitArrays
    templates : list of ndarray
        From :func:`training_templates`.
    seed : int
        Seeds the draw of the empty sites each cluster's loss sees.

    Returns
    -------
    dict of torch.Tensor
        ``stype`` (n,), ``nn`` (n,) in Å, and ``index`` (global site
        indices), ``label``, ``weight``, each (n, k): see
        :func:`diffpy_cbldm.clusters.templates.site_targets`.
    """
    import torch

    from diffpy_cbldm.clusters.templates import site_targets as targets

    from scipy.spatial import cKDTree

    offsets = np.cumsum([0] + [len(t) for t in templates])
    trees = [cKDTree(t) for t in templates]
    shapes = _registered_shapes(dataset, arrays.rows)
    shape = dataset.array("shape_index")[arrays.rows]
    per_shape, missing = {}, 0
    for s in sorted(set(int(v) for v in shape)):
        t, sites = shapes[s]
        rng = np.random.default_rng(
            np.random.SeedSequence(seed, spawn_key=(s,))
        )
        index, label, weight, lost = targets(
            sites, templates[t], k, rng, tree=trees[t]
        )
        per_shape[s] = (index + offsets[t], label, weight)
        missing += lost
    if missing:
        logger.info(
            "%d atoms of %d shapes lie outside the templates",
            missing,
            len(per_shape),
        )
    stack = [per_shape[int(s)] for s in shape]
    return {
        "stype": structure_type_codes(dataset, arrays.rows),
        "nn": torch.as_tensor(
            dataset.array("nn_distance")[arrays.rows], dtype=torch.float32
        ),
        "index": torch.as_tensor(np.stack([v[0] for v in stack])),
        "label": torch.as_tensor(np.stack([v[1] for v in stack])),
        "weight": torch.as_tensor(np.stack([v[2] for v in stack])),
    }
