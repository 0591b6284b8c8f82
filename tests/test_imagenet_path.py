"""scripts/imagenet_path.py, the speed issue's GPU check of the ImageNet path, run on the CPU at tiny sizes:
its JPEGs, its FFCV data set, every figure it reports, and its report when FFCV cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "imagenet_path.py"


def _run(out: Path, *extra: str) -> dict:
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--device", "cpu", "--quick", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "imagenet_path.json").read_text())


def test_the_imagenet_path_check_measures_every_figure_on_the_cpu(tmp_path):
    report = _run(tmp_path, "--families", "mobilenet_v1")  # ResNet-50 too would add 25 s to the test run
    assert report["jpegs"]["images"] == 32 and report["jpegs"]["classes"] == 4
    assert len(list((tmp_path / "imagefolder" / "train").rglob("*.JPEG"))) == 32
    assert (tmp_path / "ffcv" / "train.beton").is_file() and report["ffcv"]["beton_mb"] > 0
    assert report["ffcv"]["loader_alone"]["images_per_s"] > 0
    assert report["ffcv_published"]["images_per_s_per_gpu"] == 2800
    for family in ("mobilenet_v1",):
        row = report["training"][family]
        assert "error" not in row, row
        for source in ("ffcv", "torchvision", "synthetic_tensors"):
            assert row[source]["images_per_s"] > 0 and row[source]["images"] == 3 * row["batch"], (family, source)
    # the imagenet profile's recipe for the family (per-GPU batch 128, capped at the 32 images here)
    assert report["training"]["mobilenet_v1"]["lr"] == 0.5 and report["training"]["mobilenet_v1"]["batch"] == 32


def test_without_ffcv_it_says_so_and_measures_the_rest(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "ffcv.py").write_text("raise ImportError('no FFCV on this machine (test shim)')\n")
    script = (f"import sys; sys.path.insert(0, {str(shim)!r}); sys.argv = [{str(SCRIPT)!r}, '--out', "
              f"{str(tmp_path / 'out')!r}, '--device', 'cpu', '--quick', '--families', 'mobilenet_v1']; "
              f"import runpy; runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "imagenet_path.json").read_text())
    assert "no FFCV on this machine" in report["ffcv"]["not_measured_here"]
    row = report["training"]["mobilenet_v1"]
    assert "no FFCV" in row["ffcv"]["not_measured_here"]
    assert row["torchvision"]["images_per_s"] > 0 and row["synthetic_tensors"]["images_per_s"] > 0
