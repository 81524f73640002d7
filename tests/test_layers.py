"""The package layers hold: procgen_common <- baseline_agent <- trex <- policies <- experiments (import-linter)."""

from __future__ import annotations

import shutil

from tests.conftest import REPO, run_cli


def test_no_package_imports_from_a_layer_above_it():
    result = run_cli(["-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"], cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_a_wrong_way_import_breaks_the_contract(tmp_path):
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(REPO / "pyproject.toml", copy)
    for package in ("procgen_common", "baseline_agent", "trex", "policies", "experiments"):
        # The modules only: no subfolders (caches, experiment outputs).
        shutil.copytree(REPO / package, copy / package, ignore=lambda d, names: [n for n in names if "." not in n])
    with (copy / "trex" / "demos.py").open("a") as f:
        f.write("\nimport policies.train  # noqa: E402,F401\n")
    result = run_cli(["-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"], cwd=copy)
    assert result.returncode != 0
    assert "trex.demos -> policies.train" in result.stdout
