"""The device scripts' argument checks (no GPU needed: they refuse bad input before building):
scripts/regression.sh, scripts/host_overhead.sh, scripts/calibrate.sh and scripts/measure.sh
exit 2 with one line and write nothing (compare_h200.sh's: test_compare_h200_script.py)."""

import subprocess

import pytest

from analysis.tests.conftest import ROOT


def run(script, args, env=None, tmp_path=None):
    e = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    e.update(env or {})
    return subprocess.run(["bash", str(ROOT / "scripts" / script), *args], cwd=tmp_path,
                          capture_output=True, text=True, env=e, timeout=60)


@pytest.mark.parametrize("script,args,env,expect", [
    ("regression.sh", ["--bogus"], {}, "unknown argument"),
    ("regression.sh", ["--threshold"], {}, "needs a value"),
    ("regression.sh", ["--profile", "/no/such/profile.yaml"], {}, "no hardware profile"),
    ("regression.sh", ["--sim"], {"CPBENCH": "/no/such/cpbench"}, "not an executable"),
    ("host_overhead.sh", ["--bogus"], {}, "unknown argument"),
    ("host_overhead.sh", [], {"SWEEP_TIMEOUT_S": "soon"}, "SWEEP_TIMEOUT_S"),
    ("calibrate.sh", ["--bogus"], {}, "unknown argument"),
    ("calibrate.sh", [], {"GPUS": "0"}, "GPUS"),
    ("calibrate.sh", [], {"CALIBRATE_TIMEOUT_S": "-3"}, "CALIBRATE_TIMEOUT_S"),
    ("measure.sh", [], {}, "give one or more sweep files"),
    ("measure.sh", ["/no/such/sweep.yaml"], {}, "no such sweep file"),
    ("measure.sh", ["experiments/quickstart.yaml"], {"TELEMETRY_MS": "fast"}, "TELEMETRY_MS"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, script, args, env, expect):
    out = tmp_path / "out"
    r = run(script, args, {"OUT": str(out), **env}, tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert expect in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()
