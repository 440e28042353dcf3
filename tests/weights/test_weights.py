"""Weights: safetensors + manifest round trip, checksums, the entry-point
registry (with a throw-away distribution written here)."""

import dataclasses
import hashlib
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from diffpy_cbldm.conventions import Conventions
from diffpy_cbldm.model.registry import MODULES, build_modules
from diffpy_cbldm.pdf.settings import PDFSettings
from diffpy_cbldm.weights import (
    WeightsError,
    available,
    load_weights,
    read_manifest,
    save_weights,
)
from tests.model.tiny import tiny_config

METRICS = {"val_rw_median": 0.21, "epochs": [40, 30, 60]}
SAMPLER = {"sampler": "cbldm", "base": "ddpm", "t1": 350, "t2": 650}


@pytest.fixture(scope="module")
def config():
    config = tiny_config(latent_scale=0.8)
    return dataclasses.replace(
        config,
        conventions=dataclasses.replace(config.conventions, nn_peak=2.75),
    )


@pytest.fixture(scope="module")
def modules(config):
    torch.manual_seed(11)
    return build_modules(config)


def save(directory, config, modules):
    return save_weights(
        directory,
        config,
        modules,
        metrics=METRICS,
        data_hash="sha256:0123abcd",
        sampler_defaults=SAMPLER,
        description="tiny random networks for a format test",
    )


@pytest.fixture
def saved(tmp_path, config, modules):
    return save(tmp_path / "tiny", config, modules)


def test_round_trip_is_bit_exact(saved, config, modules):
    loaded_config, loaded = load_weights(saved)
    assert loaded_config == config
    assert set(loaded) == set(MODULES)
    for name, module in modules.items():
        original = module.state_dict()
        back = loaded[name].state_dict()
        assert original.keys() == back.keys()
        for key, tensor in original.items():
            assert back[key].dtype == tensor.dtype
            assert torch.equal(back[key], tensor), f"{name}.{key}"


def test_loaded_networks_compute_the_same(saved, modules):
    _, loaded = load_weights(saved)
    pdf = torch.rand(2, 3000)
    assert torch.equal(
        loaded["condition_vae"].condition(pdf),
        modules["condition_vae"].condition(pdf),
    )


def test_a_subset_of_modules(tmp_path, config, modules):
    path = save(
        tmp_path / "only", config, {"condition_vae": modules["condition_vae"]}
    )
    _, loaded = load_weights(path)
    assert list(loaded) == ["condition_vae"]


def test_manifest_holds_every_convention(saved, config):
    manifest = read_manifest(saved)
    conventions = manifest["conventions"]
    assert set(conventions) == {f.name for f in fields(Conventions)}
    assert set(conventions["pdf"]) == {f.name for f in fields(PDFSettings)}
    assert Conventions.from_dict(conventions) == config.conventions
    assert conventions["sigma"] == config.conventions.sigma
    assert conventions["ordering_rule"] == config.conventions.ordering_rule
    assert conventions["max_atoms"] == 256
    assert conventions["nn_peak"] == 2.75
    assert conventions["pdf_normalisation"] == "max-abs"
    assert (
        conventions["pdf"]["rmin"],
        conventions["pdf"]["rmax"],
        conventions["pdf"]["rstep"],
    ) == (0.0, 30.0, 0.01)
    assert manifest["sampler_defaults"] == SAMPLER
    assert manifest["metrics"] == METRICS
    assert manifest["data_hash"] == "sha256:0123abcd"
    assert manifest["architecture"]["latent_scale"] == 0.8


def test_files_are_readable_by_others(saved):
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    for path in saved.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o666 & ~umask, path.name


def test_manifest_checksums_are_the_files(saved):
    manifest = read_manifest(saved)
    assert set(manifest["files"]) == set(MODULES)
    for entry in manifest["files"].values():
        data = (saved / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data)


def test_tampered_file_is_refused(saved):
    # Change one byte of the last tensor: still a valid safetensors file,
    # so only the checksum can catch it.
    path = saved / "denoiser.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(
        WeightsError, match="denoiser.safetensors fails its checksum"
    ):
        load_weights(saved)


def test_missing_file_is_refused(saved):
    (saved / "structure_vae.safetensors").unlink()
    with pytest.raises(
        WeightsError, match="structure_vae.safetensors is missing"
    ):
        load_weights(saved)


def test_pickle_is_never_read(saved, modules):
    # A torch.save pickle with a matching checksum is still refused.
    path = saved / "condition_vae.safetensors"
    torch.save(modules["condition_vae"].state_dict(), path)
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["files"]["condition_vae"]["sha256"] = hashlib.sha256(
        path.read_bytes()
    ).hexdigest()
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="does not fit the condition_vae"):
        load_weights(saved)


def test_file_outside_the_directory_is_refused(saved):
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["files"]["denoiser"]["path"] = "../denoiser.safetensors"
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="plain file name"):
        load_weights(saved)


def test_broken_manifest_json_names_the_line(saved):
    (saved / "manifest.json").write_text('{\n  "format": \n}')
    with pytest.raises(WeightsError, match="not valid JSON.*line 3"):
        load_weights(saved)


def test_other_format_version_is_refused(saved):
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["format_version"] = 99
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="format_version 99"):
        load_weights(saved)


def test_missing_directory(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_weights(tmp_path / "nowhere")


def test_unknown_name_lists_available(throwaway_distribution):
    with pytest.raises(
        WeightsError, match=r"'no-such-set'.*available: \[.*'tiny-v1'"
    ):
        load_weights("no-such-set")


def test_save_rejects_unknown_module(tmp_path, config, modules):
    with pytest.raises(ValueError, match="unknown module name 'vae'"):
        save(tmp_path / "x", config, {"vae": modules["condition_vae"]})


def test_save_rejects_module_of_another_config(tmp_path, config):
    from dataclasses import replace

    other = build_modules(
        replace(
            config, condition=replace(config.condition, channels=(8, 8, 8))
        ),
        ["condition_vae"],
    )
    with pytest.raises(
        ValueError, match="module 'condition_vae' was built with"
    ):
        save(tmp_path / "x", config, other)


def test_save_rejects_nan_metric(tmp_path, config, modules):
    with pytest.raises(ValueError, match="metrics must hold only JSON"):
        save_weights(
            tmp_path / "x",
            config,
            modules,
            metrics={"rw": float("nan")},
            data_hash="h",
            sampler_defaults={},
        )


def test_save_rejects_unknown_sampler_default(tmp_path, config, modules):
    with pytest.raises(ValueError, match="unknown sampler_defaults key"):
        save_weights(
            tmp_path / "x",
            config,
            modules,
            metrics={},
            data_hash="h",
            sampler_defaults={"eta": 0.0},
        )


def test_save_rejects_empty_data_hash(tmp_path, config, modules):
    with pytest.raises(ValueError, match="data_hash"):
        save_weights(
            tmp_path / "x",
            config,
            modules,
            metrics={},
            data_hash="",
            sampler_defaults={},
        )


# --- entry-point registry with a throw-away distribution -----------------


def write_distribution(site, name, entry_points):
    """Write the metadata of an installed distribution `name` (version
    0.1) with `entry_points` (the text of entry_points.txt) into the
    folder `site`."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(entry_points)
    return info


@pytest.fixture
def throwaway_distribution(tmp_path, monkeypatch, config, modules):
    """An installed-looking distribution 'tiny-weights' registering
    'tiny-v1' (a function returning its weights directory) and 'broken-v1'
    (a directory that does not exist)."""
    site = tmp_path / "site"
    package = site / "tiny_weights_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from pathlib import Path\n\n\n"
        "def tiny():\n"
        "    return Path(__file__).parent / 'tiny_v1'\n\n\n"
        "def broken():\n"
        "    return Path(__file__).parent / 'missing'\n"
    )
    save(package / "tiny_v1", config, modules)
    write_distribution(
        site,
        "tiny-weights",
        "[diffpy_cbldm.weights]\n"
        "tiny-v1 = tiny_weights_pkg:tiny\n"
        "broken-v1 = tiny_weights_pkg:broken\n",
    )
    monkeypatch.syspath_prepend(str(site))
    yield package
    sys.modules.pop("tiny_weights_pkg", None)


def test_available_lists_a_third_party_set(throwaway_distribution, caplog):
    found = available()
    assert found["tiny-v1"] == throwaway_distribution / "tiny_v1"
    assert "broken-v1" not in found
    assert "broken-v1" in caplog.text


def test_load_by_registered_name(throwaway_distribution, config, modules):
    loaded_config, loaded = load_weights("tiny-v1")
    assert loaded_config == config
    key = "prior_net.0.weight"
    assert torch.equal(
        loaded["structure_vae"].state_dict()[key],
        modules["structure_vae"].state_dict()[key],
    )


def test_broken_entry_point_is_reported(throwaway_distribution):
    with pytest.raises(WeightsError, match="broken-v1.*not a directory"):
        load_weights("broken-v1")


def test_without_the_distribution_the_name_is_gone():
    assert "tiny-v1" not in available()


def test_malformed_distribution_does_not_hide_the_others(
    throwaway_distribution, tmp_path, monkeypatch, caplog
):
    """An entry_points.txt that does not parse, in any installed
    distribution, is skipped with a warning naming it."""
    site = tmp_path / "bad-site"
    write_distribution(site, "malformed-dist", "[console_scripts]\nfoo\n")
    monkeypatch.syspath_prepend(str(site))
    found = available()
    assert found["tiny-v1"] == throwaway_distribution / "tiny_v1"
    assert "malformed-dist" in caplog.text
    load_weights("tiny-v1")


def test_first_distribution_of_a_name_wins(
    throwaway_distribution, tmp_path, monkeypatch, caplog
):
    """A second copy of an installed distribution further down sys.path
    is ignored, as importlib.metadata.entry_points does."""
    site = tmp_path / "later-site"
    write_distribution(
        site, "tiny-weights", "[diffpy_cbldm.weights]\nother-v1 = x:y\n"
    )
    monkeypatch.setattr(sys, "path", sys.path + [str(site)])
    found = available()
    assert "tiny-v1" in found and "other-v1" not in found
    assert "registered twice" not in caplog.text


def test_registered_name_wins_over_a_folder_of_that_name(
    throwaway_distribution, config, tmp_path, monkeypatch
):
    """A plain name that is registered is the registered set, even with
    a folder of that name in the working directory; a path-like or a
    string with a separator is the folder."""
    work = tmp_path / "work"
    (work / "tiny-v1").mkdir(parents=True)
    monkeypatch.chdir(work)
    loaded_config, _ = load_weights("tiny-v1")
    assert loaded_config == config
    assert read_manifest("tiny-v1")["data_hash"] == "sha256:0123abcd"
    with pytest.raises(WeightsError, match="manifest.json does not exist"):
        read_manifest(f".{os.sep}tiny-v1")
    with pytest.raises(WeightsError, match="manifest.json does not exist"):
        read_manifest(Path("tiny-v1"))


def test_unregistered_name_of_a_folder_is_the_folder(
    saved, config, monkeypatch
):
    monkeypatch.chdir(saved.parent)
    loaded_config, _ = load_weights(saved.name)
    assert loaded_config == config


def test_save_weights_documents_every_module_name():
    for name in MODULES:
        assert f"``{name}``" in save_weights.__doc__
