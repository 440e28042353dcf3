"""CI runs exactly the README's two set-up commands (.ci/run)."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert len(blocks) >= 2, "the README starts with two bash commands"
    install, tests = blocks[0].strip(), blocks[1].strip()
    assert "pip install torch==2.13.0" in install
    assert "cbldm solve" in install
    assert "pytest" in tests
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert any(line.startswith(install) for line in ci), install
    assert any(line.startswith(tests) for line in ci), tests
