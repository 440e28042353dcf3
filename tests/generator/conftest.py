"""A CbLDM trained for a few epochs on the tiny icosahedral set of the
training tests: the real networks, sampler and aDGP at toy size."""

import pytest

from tests.training.conftest import (  # noqa: F401 (fixtures)
    one_torch_thread,
    tiny_config,
    tiny_set,
)


@pytest.fixture(scope="session")
def tiny_weights(tiny_set, tiny_config, tmp_path_factory):  # noqa: F811
    """Weights directory of the tiny model (3 epochs per stage)."""
    from diffpy_cbldm.training import train

    out = tmp_path_factory.mktemp("tiny-run") / "out"
    config = tiny_config.with_stage_settings(epochs=3, lr=3e-3)
    return train("all", tiny_set, out, config, progress=False)


@pytest.fixture(scope="session")
def generator(tiny_weights):
    from diffpy_cbldm import CbLDMGenerator

    return CbLDMGenerator.from_pretrained(tiny_weights, device="cpu")


@pytest.fixture(scope="session")
def measured():
    """(r, G) of a 55-atom Au icosahedron, as a measurement would give
    it (r 0.5-20 Å)."""
    from diffpy_cbldm.clusters.build import build_cluster
    from diffpy_cbldm.pdf.debye import DebyePDFCalculator

    atoms = build_cluster("icosahedral:Au:shells=3")
    r, g = DebyePDFCalculator(
        rmin=0.5, rmax=20.0, rstep=0.02, qmin=0.7, qmax=25.0, qdamp=0.03
    )(atoms)
    return r, g, atoms


@pytest.fixture(scope="session")
def small_set(tmp_path_factory):
    """Three structure types up to 60 atoms, one metal per shape."""
    from diffpy_cbldm.dataset.build import build_dataset

    out = tmp_path_factory.mktemp("small-set") / "small.h5"
    return build_dataset(
        out,
        types=("icosahedral", "octahedral", "bcc"),
        max_atoms=60,
        metals_per_shape=1,
        workers=1,
        progress=False,
    )
