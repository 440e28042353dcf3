"""Shared fixtures: the reference data in ../shared, skipped when absent."""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = SHARED / "data" / "diffpy-reference"
EXPERIMENTAL = SHARED / "data" / "experimental"

# name: (atoms, element, nearest-neighbour distance in Å), from the README
# of ../shared/data.
REFERENCE_CLUSTERS = {
    "BCC_h_2_k_9_l_9": (35, "W", 2.6),
    "Decahedron_p_1_q_1_r_1": (18, "Ta", 2.68),
    "HCP_Size1_2_Size2_2_Size3_7": (56, "Fe", 2.34),
    "Icosahedron_shell_2": (13, "Mn", 2.36),
    "Octahedron_length_6": (146, "Zn", 2.42),
    "SC_h_2_k_2_l_7": (33, "Ti", 2.64),
}


@pytest.fixture(scope="session")
def reference_dir():
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def experimental_dir():
    if not EXPERIMENTAL.is_dir():
        pytest.skip(f"experimental data not found at {EXPERIMENTAL}")
    return EXPERIMENTAL
