"""conf/ lives at the top of the repository but ships inside the package: a non-editable install finds it."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_carries_every_config_and_composes_from_anywhere(tmp_path):
    pytest.importorskip("setuptools")
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(tmp_path),
    ]
    subprocess.run([*build, str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("seqtool-*.whl"))
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("seqtool/conf/")}
    expected = {
        f"seqtool/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")
    }
    assert expected and expected <= shipped

    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    probe = (
        "import seqtool, seqtool.config as c; "
        "print(seqtool.__file__); print(c.compose(['model.cell=gru']).model.cell)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "PATH": ""},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    location, cell = result.stdout.split()
    assert location.startswith(str(site)) and cell == "gru"
