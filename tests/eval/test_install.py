"""``pip install .`` (not editable): the wheel carries every shipped checkpoint, and the
installed ``drivefuse`` command and variant names work from outside the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(
    d.name for d in (REPO / "perception" / "checkpoints").iterdir() if (d / "model.pt").is_file()
)
# Only what the build reads: the package sources, their data, pyproject and README.
_NOT_BUILT = shutil.ignore_patterns(
    ".git", ".venv", "data", "outputs", "tests", "tools", "build", "*.egg-info", "__pycache__",
    ".pytest_cache", ".ruff_cache", ".mypy_cache", ".hypothesis", "*.pyc",
)


@pytest.fixture(scope="module")
def wheel_and_site(tmp_path_factory) -> tuple[Path, Path]:
    """Build the wheel from a copy of the checkout (no build/ left in the repository) and
    install it, without dependencies, into a fresh target folder."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=_NOT_BUILT)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # No build isolation: the venv's setuptools builds it, nothing is downloaded.
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"),
                    str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("drivefuse-*.whl")
    site = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    return wheel, site


def _run_installed(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # The target folder first on the path: the installed copy, not the editable checkout.
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_wheel_carries_every_shipped_checkpoint(wheel_and_site):
    wheel, _ = wheel_and_site
    names = set(zipfile.ZipFile(wheel).namelist())
    assert len(SHIPPED) >= 9
    for v in SHIPPED:
        for f in ("model.pt", "config.json", "provenance.json", "train_log.jsonl"):
            assert f"perception/checkpoints/{v}/{f}" in names, (v, f)
    sizes = {i.filename: i.file_size for i in zipfile.ZipFile(wheel).infolist()}
    for v in SHIPPED:  # the real weights, not a pointer file
        assert sizes[f"perception/checkpoints/{v}/model.pt"] == (
            REPO / "perception/checkpoints" / v / "model.pt"
        ).stat().st_size
    assert any(n.endswith("entry_points.txt") for n in names)


def test_installed_command_and_variant_names_work_outside_the_repository(
    wheel_and_site, tmp_path
):
    _, site = wheel_and_site
    probe = (
        "import eval.cli, perception.checkpoint as c\n"
        "from perception.pipeline import Pipeline\n"
        "print(eval.cli.__file__)\n"
        "print(c.resolve_checkpoint('gated'))\n"
        "print(Pipeline.from_checkpoint('lidar_only', device='cpu').cfg.variant)\n"
    )
    proc = _run_installed(site, tmp_path, sys.executable, "-c", probe)
    assert proc.returncode == 0, proc.stderr
    cli_file, gated, variant = proc.stdout.split()
    assert Path(cli_file).is_relative_to(site)
    assert Path(gated) == site / "perception" / "checkpoints" / "gated"
    assert variant == "lidar_only"
    script = site / "bin" / "drivefuse"
    proc = _run_installed(site, tmp_path, str(script), "--help")
    assert proc.returncode == 0 and "make-dataset" in proc.stdout, proc.stderr
    proc = _run_installed(site, tmp_path, str(script), "bench-io", "--frame", "nowhere")
    assert proc.returncode == 2
    assert proc.stderr.startswith("drivefuse bench-io: error: no frame.json in ")
