"""Reading a training set: lazy access, splits, summary, integrity, and
the two ``cbldm dataset`` commands built on them."""

import pickle
import shutil

import h5py
import numpy as np
import pytest

from diffpy_cbldm.dataset.build import build_dataset
from diffpy_cbldm.dataset.store import SIZE_BINS, TrainingSet, open_dataset


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "small.h5"
    return build_dataset(
        out,
        types=("octahedral", "decahedral"),
        max_atoms=20,
        workers=1,
        progress=False,
    )


def test_open_gives_lazy_reader_with_manifest(path):
    with open_dataset(path) as ds:
        assert isinstance(ds, TrainingSet)
        assert ds.manifest["format"] == "diffpy-cbldm training set"
        assert len(ds) == ds.array("natoms").size
        assert ds.n_draws == ds.manifest["build"]["draws_per_structure"]
        assert ds.array("pdf").shape == (len(ds), ds.n_draws, 3000)
        assert ds.array("positions").shape == (len(ds), 256, 3)


def test_sample_and_atoms_agree_with_the_arrays(path):
    with open_dataset(path) as ds:
        i = len(ds) - 1
        sample = ds[i]
        n = ds.array("natoms", i)
        np.testing.assert_array_equal(
            sample.positions, ds.array("positions", i)[:n]
        )
        assert sample.pdf.shape == (ds.n_draws, 3000)
        assert sample.structure_type in ("octahedral", "decahedral")
        assert sample.split in ("train", "val", "test")
        assert len(sample.settings) == ds.n_draws
        atoms = ds.atoms(i)
        assert len(atoms) == n
        assert set(atoms.get_chemical_symbols()) == {sample.element}


def test_split_indices_partition_the_set(path):
    with open_dataset(path) as ds:
        parts = [ds.split_indices(s) for s in ("train", "val", "test")]
        joined = np.sort(np.concatenate(parts))
        np.testing.assert_array_equal(joined, np.arange(len(ds)))
        paper = [
            ds.split_indices(s, scheme="random") for s in ("train", "val")
        ]
        assert sum(p.size for p in paper) == len(ds)
        assert paper[1].size == round(0.05 * len(ds))


def test_summary_counts_match_the_arrays(path):
    with open_dataset(path) as ds:
        text = ds.summary()
        counts = ds.counts()
        natoms = ds.array("natoms")
        types = ds.array("structure_type")
        names = ds.structure_types
    assert str(path) in text
    assert "content sha256" in text
    for name in ("octahedral", "decahedral"):
        mine = types == names.index(name)
        assert counts[name]["total"] == mine.sum()
        low, high = SIZE_BINS[0]
        assert (
            counts[name][f"{low}-{high - 1}"]
            == (mine & (natoms >= low) & (natoms < high)).sum()
        )
        assert name in text
    for column in ("qmin", "qmax", "qdamp", "biso", "delta2", "noise_level"):
        assert column in text


def test_reader_survives_pickling(path):
    with open_dataset(path) as ds:
        clone = pickle.loads(pickle.dumps(ds))
        np.testing.assert_array_equal(clone[3].pdf, ds[3].pdf)
        clone.close()


def test_content_hash_detects_a_changed_number(path, tmp_path):
    copy = tmp_path / "tampered.h5"
    shutil.copy(path, copy)
    with open_dataset(copy) as ds:
        ds.verify()
    with h5py.File(copy, "r+") as f:
        f["pdf"][0, 0, 100] += 1e-3
    with open_dataset(copy) as ds:
        with pytest.raises(ValueError, match="does not match"):
            ds.verify()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.h5 not found"):
        open_dataset(tmp_path / "nothing.h5")


def test_not_an_hdf5_file(tmp_path):
    bad = tmp_path / "text.h5"
    bad.write_text("r G\n0 0\n")
    with pytest.raises(ValueError, match="text.h5 is not an HDF5 file"):
        open_dataset(bad)


def test_hdf5_file_without_manifest(tmp_path):
    bad = tmp_path / "other.h5"
    with h5py.File(bad, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="other.h5 is not a"):
        open_dataset(bad)


def test_unknown_split_name(path):
    with open_dataset(path) as ds:
        with pytest.raises(ValueError, match="'validation'"):
            ds.split_indices("validation")


def test_test_split_does_not_exist_in_random_scheme(path):
    with open_dataset(path) as ds:
        with pytest.raises(ValueError, match="random split 'test'"):
            ds.split_indices("test", scheme="random")


def test_unknown_split_scheme(path):
    with open_dataset(path) as ds:
        with pytest.raises(ValueError, match="'metal'"):
            ds.split_indices("train", scheme="metal")


def test_unknown_array(path):
    with open_dataset(path) as ds:
        with pytest.raises(KeyError, match="'laplacian'"):
            ds.array("laplacian")


def test_structure_out_of_range(path):
    with open_dataset(path) as ds:
        with pytest.raises(IndexError, match=f"structure {len(ds)}"):
            ds[len(ds)]


def test_cli_build_and_info(tmp_path, capsys):
    from diffpy_cbldm.cli import main

    out = tmp_path / "cli.h5"
    argv = ["dataset", "build", "--out", str(out), "--types", "decahedral"]
    argv += ["--max-atoms", "20", "--workers", "1", "--seed", "3"]
    assert main(argv) == 0
    assert out.is_file()
    capsys.readouterr()
    assert main(["dataset", "info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "decahedral" in printed
    with open_dataset(out) as ds:
        assert ds.manifest["seed"] == 3
        assert f"{len(ds)} structures" in printed
    # a second build into the same file is refused with a one-line error
    assert main(argv) == 2
    assert "exists" in capsys.readouterr().err


def test_cli_build_draws(tmp_path, capsys):
    from diffpy_cbldm.cli import main

    out = tmp_path / "draws.h5"
    argv = ["dataset", "build", "--out", str(out), "--types", "decahedral"]
    argv += ["--max-atoms", "13", "--workers", "1", "--draws", "3"]
    assert main(argv) == 0
    with open_dataset(out) as ds:
        assert ds.n_draws == 3
        assert ds.manifest["build"]["draws_per_structure"] == 3
        assert ds.array("pdf").shape[1] == 3
    bad = tmp_path / "bad.h5"
    argv[3] = str(bad)
    assert main(argv[:-1] + ["0"]) == 2
    assert "draws_per_structure" in capsys.readouterr().err
    assert not bad.exists()
