"""Fixtures: a small run folder made by the built cpbench (cpu backend, data/tiny.yaml) and the
committed 4x H200 run (results/gpu/2026-11-21-h200x4/gpu-smoke: cuda records with compute-only
and exposed-comm times). Both are copied to a temporary folder: the report writes into them."""

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
GPU_RUN = ROOT / "results" / "gpu" / "2026-11-21-h200x4" / "gpu-smoke"
sys.path.insert(0, str(ROOT))


def find_cpbench() -> Path | None:
    if os.environ.get("CPBENCH"):
        p = Path(os.environ["CPBENCH"])
        return p if p.is_file() else None
    for preset in ("ci", "lead", "dev", "release"):
        p = ROOT / "build" / preset / "cpbench"
        if p.is_file():
            return p
    found = sorted((ROOT / "build").glob("*/cpbench"), key=lambda p: -p.stat().st_mtime)
    return found[0] if found else None


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    exe = find_cpbench()
    if exe is None:
        pytest.skip("the cpbench binary is not built (scripts/test.sh builds build/ci/cpbench; "
                    "or set CPBENCH)")
    out = tmp_path_factory.mktemp("tiny")
    subprocess.run([str(exe), "run", str(DATA / "tiny.yaml"), "--backend", "cpu", "--out",
                    str(out)], check=True, cwd=ROOT, capture_output=True, timeout=300)
    (run,) = [p for p in out.iterdir() if (p / "manifest.json").is_file()]
    return run


@pytest.fixture
def gpu_run(tmp_path) -> Path:
    dst = tmp_path / GPU_RUN.name
    shutil.copytree(GPU_RUN, dst)
    return dst


def assert_png(path: Path) -> None:
    """A non-empty PNG with a positive width and height."""
    b = Path(path).read_bytes()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    assert b[12:16] == b"IHDR", f"{path}: no IHDR chunk"
    w, h = struct.unpack(">II", b[16:24])
    assert w > 0 and h > 0 and len(b) > 1000, f"{path}: empty image"
