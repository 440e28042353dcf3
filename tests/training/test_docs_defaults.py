"""The defaults table of the training guide (docs/user_training.rst)
against the defaults of :class:`RunConfig`."""

import re
from pathlib import Path

import pytest

from diffpy_cbldm.training import RunConfig
from diffpy_cbldm.training.config import STAGES

GUIDE = Path(__file__).parents[2] / "docs" / "user_training.rst"


def _table_rows():
    """(setting names, stage numbers, default cell) of every row of the
    settings table."""
    text = GUIDE.read_text()
    start = text.index("   * - setting")
    end = text.index("\nWrite the defaults to a file")
    rows = []
    for row in text[start:end].split("   * - ")[2:]:
        cells = [
            " ".join(cell.split())
            for cell in re.split(r"\n     - ", row.strip("\n"))
        ]
        names = re.findall(r"``(\w+)``", cells[0])
        stages = re.search(r"\(stages? ([\d, ]+)\)", cells[0])
        numbers = (
            [int(n) for n in re.findall(r"\d", stages.group(1))]
            if stages
            else [1, 2, 3, 4]
        )
        rows.append((names, numbers, cells[1]))
    return rows


def _value(text):
    text = text.strip().strip("`")
    if text == "None":
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        return float(text)
    except ValueError:
        return text.strip('"')


def _documented(cell, n_names, n_stages):
    """The documented defaults: per setting, one value per stage."""
    cell = re.sub(r" \(.*\)$", "", cell)
    per_name = cell.split(", ") if n_names > 1 else [cell]
    out = []
    for text in per_name:
        values = [_value(v) for v in text.split(" / ")]
        if len(values) == 1:
            values = values * n_stages
        out.append(values)
    return out


ROWS = _table_rows()


def test_the_table_lists_every_setting():
    documented = {name for names, _, _ in ROWS for name in names}
    config = RunConfig()
    actual = {
        name for stage in STAGES for name in config.stage(stage).to_dict()
    }
    assert actual <= documented


@pytest.mark.parametrize(
    "names, numbers, cell", ROWS, ids=[",".join(r[0]) for r in ROWS]
)
def test_documented_defaults_are_the_code_defaults(names, numbers, cell):
    config = RunConfig()
    documented = _documented(cell, len(names), len(numbers))
    for name, values in zip(names, documented):
        assert len(values) == len(numbers), (name, cell)
        for number, value in zip(numbers, values):
            stage = STAGES[number - 1]
            actual = getattr(config.stage(stage), name)
            if isinstance(value, float):
                assert actual == pytest.approx(value), (name, stage)
            else:
                assert actual == value, (name, stage)
