"""One HDF5 file per training set: its layout, writer and lazy reader.

Layout (n structures, D acquisition draws per structure, 3000 r-points)::

    positions      float32 (n, 256, 3)  Cartesian coordinates in Å,
                                        canonical order, zero-padded
    natoms         int16   (n,)         atoms in each structure
    element        S2      (n,)         chemical symbol
    structure_type uint8   (n,)         index into attr ``names``
    shape_index    int32   (n,)         index of the cluster shape
    shape_id       S*      (n,)         the shape's identifier
    nn_distance    float64 (n,)         nearest-neighbour distance in Å
    covera         float64 (n,)         c/a of hcp clusters, NaN otherwise
    pdf            float32 (n, D, 3000) G(r) in Å⁻² with noise
    pdf_settings   float64 (n, D, 9)    one row per PDF, attr ``columns``
    noise_seed     uint32  (n, D)       seed of each noise realisation
    split          uint8   (n,)         train/val/test, attr ``names``
    split_random   uint8   (n,)         the paper's random 95/5 split

The root attribute ``manifest`` is a JSON string holding every convention
a consumer needs (r-grid, Laplacian sigma, atom-ordering rule, engine,
versions, seed, acquisition ranges, split rules) and the SHA-256 of the
arrays (``content_sha256``), which training runs and weights record.
Laplacians are not stored: they are computed on the fly from
``positions`` with the manifest's sigma.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffpy_cbldm.atomic import atomic_path

__all__ = [
    "ARRAYS",
    "FORMAT",
    "FORMAT_VERSION",
    "SETTINGS_COLUMNS",
    "SIZE_BINS",
    "SPLITS",
    "RANDOM_SPLITS",
    "TrainingSample",
    "TrainingSet",
    "content_hash",
    "open_dataset",
    "write_training_set",
]

FORMAT = "diffpy-cbldm training set"
FORMAT_VERSION = 1
PAD_ATOMS = 256
SPLITS = ("train", "val", "test")
RANDOM_SPLITS = ("train", "val")
# Half-open atom-count bins [low, high) of the paper's Table 3.
SIZE_BINS = ((5, 80), (80, 170), (170, PAD_ATOMS + 1))
SETTINGS_COLUMNS = (
    "qmin",
    "qmax",
    "qdamp",
    "qbroad",
    "biso",
    "delta2",
    "scale",
    "noise_level",
    "noise_sigma",
)

# name: (dtype, shape after the structure axis, description with units).
# "D" is the number of draws, "NR" the r-points; shape_id's width is set
# when written.
ARRAYS = {
    "positions": (
        "float32",
        (PAD_ATOMS, 3),
        "Cartesian coordinates in Å, canonical order, zero-padded",
    ),
    "natoms": ("int16", (), "number of atoms"),
    "element": ("S2", (), "chemical symbol"),
    "structure_type": ("uint8", (), "index into attr names"),
    "shape_index": ("int32", (), "index of the cluster shape in the build"),
    "shape_id": ("S", (), "identifier of the cluster shape"),
    "nn_distance": ("float64", (), "nearest-neighbour distance in Å"),
    "covera": ("float64", (), "c/a of hcp clusters, NaN for other types"),
    "pdf": ("float32", ("D", "NR"), "G(r) in Å⁻² on the r-grid, noisy"),
    "pdf_settings": (
        "float64",
        ("D", len(SETTINGS_COLUMNS)),
        "settings of each PDF, columns in attr columns",
    ),
    "noise_seed": ("uint32", ("D",), "seed of each noise realisation"),
    "split": ("uint8", (), "train/val/test by shape, names in attr names"),
    "split_random": ("uint8", (), "the paper's random 95/5 split"),
}


def _row_shape(name, n_draws, n_r):
    sizes = {"D": n_draws, "NR": n_r}
    return tuple(sizes.get(s, s) for s in ARRAYS[name][1])


def write_training_set(
    path, blocks, *, n_structures, n_draws, n_r, shape_id_len, attrs, manifest
):
    """Write a training set through :func:`atomic_path`, block by block.

    Parameters
    ----------
    path : path-like
        Destination .h5 file; it appears only once complete.
    blocks : iterable of dict
        Consecutive row blocks, each a dict {name: array} with every name
        of :data:`ARRAYS`; block lengths add up to `n_structures`.
    n_structures, n_draws, n_r : int
        Number of structures, PDFs per structure and r-points.
    shape_id_len : int
        Width in bytes of the ``shape_id`` strings.
    attrs : dict
        Extra HDF5 attributes per array, {name: {key: value}}.
    manifest : dict
        Conventions of the set; ``content_sha256`` is added here.

    Returns
    -------
    str
        The SHA-256 content hash.
    """
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for name, (dtype, _, description) in ARRAYS.items():
                if name == "shape_id":
                    dtype = f"S{max(shape_id_len, 1)}"
                row = _row_shape(name, n_draws, n_r)
                chunks = (1,) + row if name == "pdf" else None
                ds = f.create_dataset(
                    name,
                    shape=(n_structures,) + row,
                    dtype=dtype,
                    chunks=chunks,
                )
                ds.attrs["description"] = description
                for key, value in attrs.get(name, {}).items():
                    ds.attrs[key] = value
            start = 0
            for block in blocks:
                stop = start + len(block["natoms"])
                if stop > n_structures:
                    raise ValueError(
                        f"blocks hold more than {n_structures} structures"
                    )
                for name in ARRAYS:
                    f[name][start:stop] = block[name]
                start = stop
            if start != n_structures:
                raise ValueError(
                    f"blocks hold {start} structures, expected {n_structures}"
                )
            digest = content_hash(f)
            manifest = dict(manifest, content_sha256=digest)
            f.attrs["manifest"] = json.dumps(manifest, sort_keys=True)
    return digest


def content_hash(h5file, block_rows=2048):
    """SHA-256 over every array of a training set, in a fixed order.

    Each array contributes its name, dtype, shape and its bytes in C
    order, so the hash depends on the stored numbers only (not on HDF5
    chunking or attributes).

    Parameters
    ----------
    h5file : h5py.File
        An open training-set file.
    """
    sha = hashlib.sha256()
    for name in ARRAYS:
        ds = h5file[name]
        sha.update(f"{name}:{ds.dtype.str}:{ds.shape};".encode())
        for start in range(0, ds.shape[0], block_rows):
            block = ds[start : start + block_rows]
            sha.update(np.ascontiguousarray(block).tobytes())
    return sha.hexdigest()


@dataclass(frozen=True)
class TrainingSample:
    """One structure of a training set with all its PDFs.

    Attributes
    ----------
    index : int
        Row in the set.
    positions : numpy.ndarray, shape (natoms, 3)
        Cartesian coordinates in Å, canonical order, centred.
    element : str
    structure_type : str
    shape_id : str
    nn_distance : float
        Nearest-neighbour distance in Å.
    pdf : numpy.ndarray, shape (D, 3000)
        G(r) in Å⁻² on the set's r-grid, one row per acquisition draw.
    settings : tuple of PDFSettings
        The settings of each PDF.
    noise_level : numpy.ndarray, shape (D,)
        Noise rms over the grid divided by max|G| of the noiseless PDF.
    split : str
        "train", "val" or "test".
    """

    index: int
    positions: np.ndarray
    element: str
    structure_type: str
    shape_id: str
    nn_distance: float
    pdf: np.ndarray
    settings: tuple
    noise_level: np.ndarray
    split: str


def open_dataset(path):
    """Open a training set written by
    :func:`diffpy_cbldm.dataset.build.build_dataset`.

    Parameters
    ----------
    path : path-like
        The .h5 file.

    Returns
    -------
    TrainingSet
        A lazy reader; use it as a context manager or call ``close()``.

    Raises
    ------
    FileNotFoundError
        When `path` does not exist.
    ValueError
        When `path` is not a training set of this format.
    """
    return TrainingSet(path)


class TrainingSet:
    """Lazy reader of a training-set HDF5 file.

    Arrays are read from disk only when asked for. The file handle is
    opened per process, so one object can be handed to the worker
    processes of a ``torch.utils.data.DataLoader``.

    Attributes
    ----------
    path : pathlib.Path
    manifest : dict
        The conventions the set was built with (see the module docstring).
    structure_types : tuple of str
        Names indexed by the ``structure_type`` array.
    n_draws : int
        PDFs per structure.
    """

    def __init__(self, path):
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"training set {self.path} not found")
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise ValueError(
                f"{self.path} is not an HDF5 file: {exc}"
            ) from None
        self._file, self._pid = f, os.getpid()
        raw = f.attrs.get("manifest")
        manifest = json.loads(raw) if raw is not None else {}
        if manifest.get("format") != FORMAT:
            f.close()
            raise ValueError(
                f"{self.path} is not a {FORMAT!r} file (manifest format "
                f"{manifest.get('format')!r})"
            )
        if manifest.get("format_version") != FORMAT_VERSION:
            f.close()
            raise ValueError(
                f"{self.path} has format_version "
                f"{manifest.get('format_version')!r}; this reader knows "
                f"{FORMAT_VERSION}"
            )
        missing = [name for name in ARRAYS if name not in f]
        if missing:
            f.close()
            raise ValueError(f"{self.path} lacks arrays {missing}")
        self.manifest = manifest
        self.structure_types = tuple(
            s.decode() if isinstance(s, bytes) else str(s)
            for s in f["structure_type"].attrs["names"]
        )
        self.n_draws = int(f["pdf"].shape[1])
        self._len = int(f["natoms"].shape[0])

    # -- file handling -------------------------------------------------

    @property
    def file(self):
        """The open h5py.File of this process."""
        import h5py

        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def close(self):
        """Close the file handle of this process."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def __len__(self):
        return self._len

    # -- data access ---------------------------------------------------

    @property
    def rgrid(self):
        """The r-grid of every PDF in Å, shape (3000,)."""
        from diffpy_cbldm.pdf.settings import rgrid

        g = self.manifest["rgrid"]
        return rgrid(g["rmin"], g["rmax"], g["rstep"])

    def array(self, name, index=slice(None)):
        """Rows `index` of the stored array `name` as numpy.

        Parameters
        ----------
        name : str
            One of :data:`ARRAYS`.
        index : int, slice or sorted array of int
        """
        if name not in ARRAYS:
            raise KeyError(
                f"no array {name!r} in a training set; arrays: "
                f"{', '.join(ARRAYS)}"
            )
        return self.file[name][index]

    def _check_index(self, index):
        if not -self._len <= index < self._len:
            raise IndexError(
                f"structure {index} out of range for {self._len} structures"
            )
        return index % self._len

    def __getitem__(self, index):
        i = self._check_index(int(index))
        f = self.file
        n = int(f["natoms"][i])
        table = f["pdf_settings"][i]
        return TrainingSample(
            index=i,
            positions=f["positions"][i, :n].astype(float),
            element=f["element"][i].decode(),
            structure_type=self.structure_types[f["structure_type"][i]],
            shape_id=f["shape_id"][i].decode(),
            nn_distance=float(f["nn_distance"][i]),
            pdf=f["pdf"][i],
            settings=tuple(self._settings(row) for row in table),
            noise_level=table[:, SETTINGS_COLUMNS.index("noise_level")],
            split=SPLITS[f["split"][i]],
        )

    def _settings(self, row):
        from diffpy_cbldm.pdf.settings import PDFSettings

        g = self.manifest["rgrid"]
        values = dict(zip(SETTINGS_COLUMNS, (float(v) for v in row)))
        for key in ("noise_level", "noise_sigma"):
            values.pop(key)
        return PDFSettings(
            rmin=g["rmin"], rmax=g["rmax"], rstep=g["rstep"], **values
        )

    def acquisition(self, index, draw=0):
        """The :class:`~diffpy_cbldm.dataset.acquisition.Acquisition` of
        PDF `draw` of structure `index`: its settings, noise level and
        noise seed, from which the stored noise can be regenerated."""
        return self._acquisition(index, draw)[0]

    def _acquisition(self, index, draw):
        """(Acquisition, stored settings row) of PDF `draw` of `index`."""
        from diffpy_cbldm.dataset.acquisition import Acquisition

        i = self._check_index(int(index))
        if not 0 <= draw < self.n_draws:
            raise IndexError(
                f"draw {draw} out of range for {self.n_draws} draws"
            )
        row = self.file["pdf_settings"][i, draw]
        level = float(row[SETTINGS_COLUMNS.index("noise_level")])
        seed = int(self.file["noise_seed"][i, draw])
        return Acquisition(self._settings(row), level, seed), row

    def noise(self, index, draw=0):
        """The noise added to PDF `draw` of structure `index`, in Å⁻².

        Regenerated from the stored seed and scaled by the stored
        ``noise_sigma``: ``ds[index].pdf[draw] - ds.noise(index, draw)``
        is the noiseless PDF (to float32 rounding).

        Returns
        -------
        numpy.ndarray, shape (3000,)
            Float64, on :attr:`rgrid`; zeros for a noiseless draw.
        """
        acquisition, row = self._acquisition(index, draw)
        sigma = float(row[SETTINGS_COLUMNS.index("noise_sigma")])
        return acquisition.noise(sigma)

    def atoms(self, index):
        """Structure `index` as an ``ase.Atoms`` (no cell, no pbc)."""
        import ase

        sample = self[index]
        symbols = [sample.element] * len(sample.positions)
        return ase.Atoms(symbols, positions=sample.positions)

    def split_indices(self, name, scheme="shape"):
        """Structure indices of one split, sorted.

        Parameters
        ----------
        name : str
            "train", "val" or "test" (``scheme="shape"``); "train" or
            "val" (``scheme="random"``).
        scheme : str
            "shape": the split by cluster shape (rare types by metal
            scale, see the manifest); "random": the paper's random 95/5
            split over structures.

        Returns
        -------
        numpy.ndarray of int, shape (n_split,)
        """
        if scheme == "shape":
            names, key = SPLITS, "split"
        elif scheme == "random":
            names, key = RANDOM_SPLITS, "split_random"
        else:
            raise ValueError(
                f"unknown split scheme {scheme!r}; use 'shape' or 'random'"
            )
        if name not in names:
            raise ValueError(
                f"unknown {scheme} split {name!r}; choose from {names}"
            )
        codes = self.file[key][:]
        return np.flatnonzero(codes == names.index(name))

    def verify(self):
        """Recompute the content hash; raise ValueError on a mismatch."""
        digest = content_hash(self.file)
        stored = self.manifest.get("content_sha256")
        if digest != stored:
            raise ValueError(
                f"{self.path}: content sha256 {digest} does not match the "
                f"manifest's {stored}"
            )
        return digest

    # -- summary -------------------------------------------------------

    def counts(self):
        """Structures per type and size bin.

        Returns
        -------
        dict
            {type: {"5-79": n, "80-169": n, "170-256": n, "total": n,
            "train": n, "val": n, "test": n}} for every type present.
        """
        natoms = self.array("natoms")
        types = self.array("structure_type")
        split = self.array("split")
        table = {}
        for code, name in enumerate(self.structure_types):
            mask = types == code
            if not mask.any():
                continue
            row = {}
            for low, high in SIZE_BINS:
                inside = (natoms >= low) & (natoms < high)
                row[f"{low}-{high - 1}"] = int((mask & inside).sum())
            row["total"] = int(mask.sum())
            for s, split_name in enumerate(SPLITS):
                row[split_name] = int((mask & (split == s)).sum())
            table[name] = row
        return table

    def summary(self):
        """A printable report: counts per type, size bin and split, and
        the ranges of the stored settings (for ``cbldm dataset info``)."""
        m = self.manifest
        counts = self.counts()
        size = self.path.stat().st_size
        g, r = m["rgrid"], self.rgrid
        n_pdf = len(self) * self.n_draws
        lines = [
            f"training set {self.path} ({size / 1e6:.1f} MB)",
            f"  {len(self)} structures, {n_pdf} PDFs ({self.n_draws} per "
            f"structure), r = {r[0]:g}-{r[-1]:g} Å step "
            f"{g['rstep']:g} ({g['npoints']} points)",
            f"  built by diffpy-cbldm {m.get('package_version')}, seed "
            f"{m.get('seed')}, engine {m.get('engine', {}).get('name')}",
            f"  content sha256 {m.get('content_sha256')}",
            "",
        ]
        columns = [f"{lo}-{hi - 1}" for lo, hi in SIZE_BINS]
        columns += ["total", *SPLITS]
        header = f"  {'type':<12}" + "".join(f"{c:>9}" for c in columns)
        lines.append(header)
        totals = dict.fromkeys(columns, 0)
        for name, row in counts.items():
            lines.append(
                f"  {name:<12}" + "".join(f"{row[c]:>9}" for c in columns)
            )
            for c in columns:
                totals[c] += row[c]
        lines.append(
            f"  {'all':<12}" + "".join(f"{totals[c]:>9}" for c in columns)
        )
        rule = m.get("splits", {}).get("split", {})
        split_by = rule.get("by_type", {})
        by_metal = sorted(t for t, how in split_by.items() if how == "metal")
        if by_metal:
            held = rule.get("held_out_metals", {})
            lines.append(
                f"  split by shape; by metal scale for {', '.join(by_metal)}"
                f" (val metals {', '.join(held.get('val', []))}; test "
                f"metals {', '.join(held.get('test', []))})"
            )
        else:
            lines.append("  split by shape")
        left_out = {
            t: n for t, n in rule.get("left_out_shapes", {}).items() if n
        }
        if left_out:
            lines.append(
                f"  families held out in windows of "
                f"{rule['family_window']} atoms; left out as a buffer of "
                f"{rule['family_buffer']} atoms: "
                + ", ".join(f"{n} {t}" for t, n in left_out.items())
                + " shapes"
            )
        random_split = self.array("split_random")
        lines.append(
            "  random split (paper, 95/5): "
            f"train {int((random_split == 0).sum())}, "
            f"val {int((random_split == 1).sum())}"
        )
        nn = self.array("nn_distance")
        elements = sorted({e.decode() for e in self.array("element")})
        lines.append(
            f"  {len(elements)} elements, nearest-neighbour distance "
            f"{nn.min():.3f}-{nn.max():.3f} Å"
        )
        covera = self.array("covera")
        if np.isfinite(covera).any():
            drawn = m.get("hcp_covera_range", ["?", "?"])
            lines.append(
                f"  hcp c/a {np.nanmin(covera):.3f}-{np.nanmax(covera):.3f}"
                f" (drawn from [{drawn[0]}, {drawn[1]}])"
            )
        lines += ["", "  PDF settings (stored min-max, drawn from):"]
        table = self.array("pdf_settings").reshape(-1, len(SETTINGS_COLUMNS))
        ranges = m.get("acquisition_ranges", {})
        for k, name in enumerate(SETTINGS_COLUMNS):
            key = "noise" if name == "noise_level" else name
            drawn = ranges.get(key)
            drawn = f"[{drawn[0]:g}, {drawn[1]:g}]" if drawn else ""
            lines.append(
                f"    {name:<12}{table[:, k].min():>10.4g}"
                f"{table[:, k].max():>10.4g}   {drawn}"
            )
        lines.append(
            f"  Laplacians are not stored: computed from positions with "
            f"sigma = {m.get('laplacian', {}).get('sigma')} Å"
        )
        return "\n".join(lines)
