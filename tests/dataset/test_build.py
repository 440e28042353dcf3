"""Building the training set: determinism, splits, physics, resuming,
bad input. Every build here is tiny: octahedral clusters of at most 25
atoms (53 shapes, split by shape) and decahedral ones (6 shapes, split
by metal)."""

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from diffpy_cbldm.dataset.acquisition import AcquisitionRanges
from diffpy_cbldm.dataset.build import build_dataset
from diffpy_cbldm.dataset.store import ARRAYS, open_dataset

TINY = {"types": ("octahedral", "decahedral"), "max_atoms": 25}


def _build(folder, name, **options):
    out = Path(folder) / name
    options = {**TINY, "progress": False, "workers": 1, **options}
    return build_dataset(out, **options)


def _arrays(path):
    with open_dataset(path) as ds:
        return {name: ds.array(name) for name in ARRAYS}, ds.manifest


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    return _build(folder, "one-worker.h5", workers=1, chunk_size=16)


@pytest.fixture(scope="module")
def arrays(built):
    return _arrays(built)


def test_build_writes_one_file_and_removes_parts(built):
    assert built.is_file()
    assert not built.with_name(built.name + ".parts").exists()
    leftovers = [p for p in built.parent.iterdir() if p != built]
    assert leftovers == []


def test_two_workers_give_identical_arrays(built, arrays, tmp_path):
    other = _build(tmp_path, "two-workers.h5", workers=2, chunk_size=16)
    second, manifest = _arrays(other)
    first, first_manifest = arrays
    for name in ARRAYS:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    assert manifest["content_sha256"] == first_manifest["content_sha256"]


def test_another_seed_gives_other_draws(arrays, tmp_path):
    other = _build(tmp_path, "seed7.h5", seed=7)
    second, _ = _arrays(other)
    first, _ = arrays
    assert not np.array_equal(first["pdf_settings"], second["pdf_settings"])


def test_splits_keep_each_shape_or_metal_in_one_split(arrays):
    data, manifest = arrays
    rule = manifest["splits"]["split"]
    names = manifest["structure_types"]
    held = rule["held_out_metals"]
    for code, stype in enumerate(names):
        rows = data["structure_type"] == code
        if not rows.any():
            continue
        split = data["split"][rows]
        # every type has val and test cases
        assert (split == 1).any() and (split == 2).any(), stype
        key = "shape_index" if rule["by_type"][stype] == "shape" else "element"
        for value in np.unique(data[key][rows]):
            assert np.unique(split[data[key][rows] == value]).size == 1
        if rule["by_type"][stype] == "metal":
            elements = data["element"][rows].astype(str)
            np.testing.assert_array_equal(
                split == 2, np.isin(elements, held["test"])
            )
            np.testing.assert_array_equal(
                split == 1, np.isin(elements, held["val"])
            )


def _shapes_by_split(arrays):
    from diffpy_cbldm.clusters.build import enumerate_shapes

    data, _ = arrays
    split = {}
    for sid, code in zip(data["shape_id"], data["split"]):
        split[sid.decode()] = int(code)
    shapes = list(enumerate_shapes(TINY["types"], max_atoms=25))
    return shapes, split


def test_families_are_held_out_in_windows_with_a_buffer(arrays):
    from diffpy_cbldm.dataset.build import FAMILY_BUFFER, FAMILY_WINDOW

    shapes, split = _shapes_by_split(arrays)
    held = [s for s in shapes if split.get(s.shape_id, 0)]
    families = [s for s in held if s.family != s.shape_id]
    assert families, "the tiny set should hold out octahedral families"
    for shape in families:
        for other in shapes:
            if other.family != shape.family:
                continue
            if other.natoms // FAMILY_WINDOW == shape.natoms // FAMILY_WINDOW:
                # the whole window is on one side
                assert split[other.shape_id] == split[shape.shape_id]
            elif abs(other.natoms - shape.natoms) <= FAMILY_BUFFER:
                # near relatives are held out too, or left out
                assert split.get(other.shape_id, -1) != 0, other.shape_id


def test_left_out_shapes_are_counted_in_the_manifest(arrays):
    _, manifest = arrays
    shapes, split = _shapes_by_split(arrays)
    rule = manifest["splits"]["split"]
    for stype in TINY["types"]:
        missing = [
            s for s in shapes if s.stype == stype and s.shape_id not in split
        ]
        assert rule["left_out_shapes"][stype] == len(missing)


def test_a_type_of_large_windows_still_gets_val_and_test():
    from diffpy_cbldm.clusters.build import enumerate_shapes
    from diffpy_cbldm.dataset.build import _split_shapes

    shapes = [
        s
        for s in enumerate_shapes(("octahedral",), max_atoms=40)
        if s.family == "octahedral/Octahedron/cutoff=0,length=4"
    ]
    # windows of 2, 12, 19 and 19 shapes; 3 wanted in val and in test
    codes = _split_shapes(shapes, np.random.default_rng(0))
    assert {1, 2} <= set(codes.tolist()) and (codes == 0).any()


def test_buffer_leaves_out_train_relatives_near_a_held_out_shape():
    from diffpy_cbldm.clusters.build import enumerate_shapes
    from diffpy_cbldm.dataset.build import FAMILY_BUFFER, _buffer

    shapes = list(enumerate_shapes(("octahedral",), max_atoms=25))
    family = "octahedral/Octahedron/cutoff=0,length=3"
    held = [s.family == family and s.natoms == 12 for s in shapes]
    assert sum(held) == 2
    split = np.where(held, 2, 0).astype(np.uint8)
    left_out = _buffer(shapes, split)
    for shape, out, code in zip(shapes, left_out, split):
        near = shape.family == family and abs(shape.natoms - 12) <= 5
        assert out == (near and code == 0), shape.shape_id
    # 7-11 and 13-17 atoms: two shapes of most counts
    assert FAMILY_BUFFER == 5 and left_out.sum() == 17


def test_shapes_without_relatives_are_drawn_one_by_one():
    from diffpy_cbldm.clusters.build import enumerate_shapes
    from diffpy_cbldm.dataset.build import _split_shapes

    shapes = list(enumerate_shapes(("fcc",), max_atoms=256))
    assert len({s.family for s in shapes}) == len(shapes)
    order = np.random.default_rng(3).permutation(len(shapes))
    n_test = round(0.05 * len(shapes))
    expected = np.zeros(len(shapes), dtype=np.uint8)
    expected[order[:n_test]] = 2
    expected[order[n_test : 2 * n_test]] = 1
    codes = _split_shapes(shapes, np.random.default_rng(3))
    np.testing.assert_array_equal(codes, expected)


def test_random_split_is_five_percent(arrays):
    data, _ = arrays
    n = data["natoms"].size
    assert (data["split_random"] == 1).sum() == round(0.05 * n)
    assert set(np.unique(data["split_random"])) == {0, 1}


def test_coordinates_reproduce_the_metal_nn_distance(arrays):
    from diffpy_cbldm.clusters.build import METALS

    data, manifest = arrays
    for i in range(0, data["natoms"].size, 7):
        n = data["natoms"][i]
        xyz = data["positions"][i, :n].astype(float)
        element = data["element"][i].decode()
        assert pdist(xyz).min() == pytest.approx(
            data["nn_distance"][i], rel=1e-5
        )
        assert manifest["metals"][element] == data["nn_distance"][i]
        assert data["nn_distance"][i] == pytest.approx(METALS[element].nn)
        # zero padding beyond natoms, centred cluster
        assert not data["positions"][i, n:].any()
        np.testing.assert_allclose(xyz.mean(axis=0), 0.0, atol=1e-4)


def test_stored_order_is_canonical(built):
    from scipy.spatial.distance import squareform

    from diffpy_cbldm.clusters.order import canonicalize

    # The ordering rule fixes the distance matrix (hence the Laplacian),
    # not which of several equivalent atoms takes a row: reordering the
    # stored atoms must give the same matrix.
    with open_dataset(built) as ds:
        for i in (0, len(ds) // 2, len(ds) - 1):
            atoms = ds.atoms(i)
            shuffled = atoms[np.random.default_rng(i).permutation(len(atoms))]
            again = canonicalize(shuffled)
            np.testing.assert_allclose(
                squareform(pdist(again.positions)),
                squareform(pdist(atoms.positions)),
                atol=1e-4,
            )


def test_stored_pdf_equals_a_fresh_debye_calculation(built):
    import torch

    from diffpy_cbldm.pdf.debye import DebyePDFCalculator

    with open_dataset(built) as ds:
        for i in (0, len(ds) // 3, len(ds) - 1):
            atoms = ds.atoms(i)
            stored = ds[i].pdf
            for draw in range(ds.n_draws):
                acquisition = ds.acquisition(i, draw)
                calc = DebyePDFCalculator.from_settings(
                    acquisition.settings, dtype=torch.float64
                )
                r, fresh = calc.batch([atoms])
                fresh = np.asarray(fresh)[0]
                np.testing.assert_allclose(r, ds.rgrid)
                # The stored noise has the recorded level ...
                rms = np.sqrt(np.mean((stored[draw] - fresh) ** 2))
                level = acquisition.noise_level
                assert rms == pytest.approx(
                    level * np.abs(fresh).max(), rel=1e-3, abs=1e-5
                )
                # ... and is regenerated exactly from its seed.
                noisy, _ = acquisition.add_noise(fresh)
                scale = np.abs(fresh).max()
                np.testing.assert_allclose(
                    stored[draw], noisy, atol=1e-5 * scale
                )
                # Stripping the stored noise gives the noiseless PDF.
                noise = ds.noise(i, draw)
                assert np.sqrt(np.mean(noise**2)) == pytest.approx(
                    rms, rel=1e-3, abs=1e-6
                )
                np.testing.assert_allclose(
                    stored[draw] - noise, fresh, atol=1e-5 * scale
                )


def test_settings_lie_in_the_ranges(built):
    ranges = AcquisitionRanges()
    with open_dataset(built) as ds:
        for i in range(0, len(ds), 11):
            for draw in range(ds.n_draws):
                a = ds.acquisition(i, draw)
                assert ranges.contains(a.settings, a.noise_level)


def test_manifest_records_the_conventions(built, arrays):
    import diffpy_cbldm
    from diffpy_cbldm.clusters.laplacian import DEFAULT_SIGMA
    from diffpy_cbldm.clusters.order import ORDERING_RULE
    from diffpy_cbldm.pdf.settings import PDFSettings

    _, manifest = arrays
    assert manifest["rgrid"] == {
        "rmin": 0.0,
        "rmax": 30.0,
        "rstep": 0.01,
        "npoints": 3000,
    }
    with open_dataset(built) as ds:
        np.testing.assert_array_equal(ds.rgrid, PDFSettings().rgrid)
        assert ds.verify() == manifest["content_sha256"]
    assert manifest["laplacian"]["sigma"] == DEFAULT_SIGMA
    assert manifest["laplacian"]["stored"] is False
    assert manifest["ordering_rule"] == ORDERING_RULE
    assert manifest["package_version"] == diffpy_cbldm.__version__
    import ase
    import scipy

    assert manifest["ase_version"] == ase.__version__
    assert manifest["scipy_version"] == scipy.__version__
    assert manifest["seed"] == 42
    assert manifest["acquisition_ranges"] == AcquisitionRanges().to_dict()
    # types in the order of STRUCTURE_TYPES, whatever order was asked for
    assert manifest["build"]["types"] == ["decahedral", "octahedral"]
    assert manifest["engine"]["name"].endswith("DebyePDFCalculator")
    assert len(manifest["content_sha256"]) == 64


_INTERRUPTED = """
import sys
from diffpy_cbldm.dataset.build import build_dataset
build_dataset(sys.argv[1], types=("octahedral", "decahedral"),
              max_atoms=25, workers=1, chunk_size=4, progress=False)
"""


def test_resume_after_a_kill_equals_an_uninterrupted_build(
    arrays, tmp_path, caplog
):
    out = tmp_path / "killed.h5"
    parts = tmp_path / "killed.h5.parts"
    proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTED, str(out)])
    try:
        deadline = time.monotonic() + 120
        while len(list(parts.glob("chunk-*.npz"))) < 3:
            assert proc.poll() is None, "build ended before it was killed"
            assert time.monotonic() < deadline, "no chunk appeared"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    finished = len(list(parts.glob("chunk-*.npz")))
    n_structures = arrays[0]["natoms"].size
    assert 3 <= finished < -(-n_structures // 4)
    assert not out.exists()
    with caplog.at_level(logging.INFO, logger="diffpy_cbldm.dataset.build"):
        build_dataset(out, **TINY, workers=1, chunk_size=4, progress=False)
    assert f"reusing {finished} finished chunks" in caplog.text
    assert not parts.exists()
    resumed, _ = _arrays(out)
    for name in ARRAYS:
        np.testing.assert_array_equal(
            resumed[name], arrays[0][name], err_msg=name
        )


def test_parts_of_another_build_are_discarded(arrays, tmp_path, caplog):
    out = tmp_path / "stale.h5"
    parts = tmp_path / "stale.h5.parts"
    # Leftovers of an interrupted build with other parameters.
    parts.mkdir()
    (parts / "plan.json").write_text('{"fingerprint": "another build"}')
    (parts / "chunk-00000.npz").write_bytes(b"not a chunk of this build")
    with caplog.at_level(logging.WARNING, logger="diffpy_cbldm.dataset.build"):
        _build(tmp_path, "stale.h5", chunk_size=16)
    assert "removing 1 chunks of a different build" in caplog.text
    assert not parts.exists()
    rebuilt, _ = _arrays(out)
    for name in ARRAYS:
        np.testing.assert_array_equal(
            rebuilt[name], arrays[0][name], err_msg=name
        )


# -- bad input: one test each, all raised before any work ----------------


def test_unknown_types_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"'cubic'.*valid types are fcc"):
        _build(tmp_path, "x.h5", types=("fcc", "cubic"))


@pytest.mark.parametrize("max_atoms", [4, 257])
def test_max_atoms_outside_5_to_256(tmp_path, max_atoms):
    with pytest.raises(ValueError, match=f"max_atoms={max_atoms}"):
        _build(tmp_path, "x.h5", max_atoms=max_atoms)


def test_min_atoms_above_max_atoms(tmp_path):
    with pytest.raises(ValueError, match="min_atoms=80 is larger"):
        _build(tmp_path, "x.h5", min_atoms=80, max_atoms=25)


def test_zero_workers(tmp_path):
    with pytest.raises(ValueError, match="workers=0"):
        _build(tmp_path, "x.h5", workers=0)


def test_zero_draws(tmp_path):
    with pytest.raises(ValueError, match="draws_per_structure=0"):
        _build(tmp_path, "x.h5", draws_per_structure=0)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.*does not exist"):
        _build(tmp_path / "missing", "x.h5")


def _writable(folder):
    try:
        fd, probe = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def test_unwritable_folder(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if _writable(folder):  # root ignores file modes
            folder = Path("/sys")
        if _writable(folder):
            pytest.skip("no unwritable folder on this machine")
        started = time.perf_counter()
        with pytest.raises(PermissionError, match="not writable"):
            _build(folder, "x.h5")
        assert time.perf_counter() - started < 5
    finally:
        (tmp_path / "read-only").chmod(0o700)


def test_existing_output_is_refused_unless_overwrite(built, tmp_path):
    out = tmp_path / "exists.h5"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="exists.h5 exists"):
        _build(tmp_path, "exists.h5", max_atoms=13)
    assert out.read_bytes() == b"precious"
    _build(tmp_path, "exists.h5", max_atoms=13, overwrite=True)
    with open_dataset(out) as ds:
        assert ds.array("natoms").max() <= 13


def test_info_names_the_shapes_left_out(tmp_path):
    path = _build(
        tmp_path,
        "octahedra.h5",
        types=("octahedral",),
        max_atoms=30,
        metals_per_shape=1,
        draws_per_structure=1,
    )
    data, manifest = _arrays(path)
    left_out = manifest["splits"]["split"]["left_out_shapes"]["octahedral"]
    assert left_out > 0
    with open_dataset(path) as ds:
        text = ds.summary()
    assert (
        f"left out as a buffer of 5 atoms: {left_out} octahedral shapes"
        in text
    )
