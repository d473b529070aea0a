"""A plain (non-editable) install ships envs/ and demos/ as vinn_policy.envs / vinn_policy.demos."""

import subprocess
import sys
import zipfile

import pytest


@pytest.mark.slow
def test_wheel_maps_envs_and_demos_into_the_package(tmp_path):
    root = __file__.rsplit("/tests/", 1)[0]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", root, "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        check=True,
    )
    wheel = next(tmp_path.glob("vinn_policy-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("vinn_policy/__init__.py", "vinn_policy/envs/__init__.py", "vinn_policy/demos/__init__.py"):
        assert module in names
    assert not any(n.startswith(("envs/", "demos/", "tests/")) for n in names)  # nothing at top level to collide

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True)
    probe = "import vinn_policy.envs, vinn_policy.demos; print(vinn_policy.envs.__file__)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(site)}, capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith(str(site))
