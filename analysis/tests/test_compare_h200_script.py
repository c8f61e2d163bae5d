"""scripts/compare_h200.sh refuses bad arguments and knobs before it builds or writes anything."""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "compare_h200.sh"


@pytest.mark.parametrize("args, env, message", [
    (["--part", "bogus"], {}, "--part must be mha, gqa or all, not 'bogus'"),
    (["--part"], {}, "--part needs mha, gqa or all"),
    (["--fast"], {}, "unknown argument --fast"),
    ([], {"SWEEP_TIMEOUT_S": "abc"}, "SWEEP_TIMEOUT_S must be a whole number >= 1"),
    ([], {"PEER_TIMEOUT_S": "0"}, "PEER_TIMEOUT_S must be a whole number >= 1"),
    ([], {"TESTS_TIMEOUT_S": "1.5"}, "TESTS_TIMEOUT_S must be a whole number >= 1"),
    ([], {"TELEMETRY_MS": "fast"}, "TELEMETRY_MS must be a whole number >= 1"),
    (["--sweep", "/no/such/sweep.yaml"], {}, "/no/such/sweep.yaml: no such sweep file"),
    (["--sweep"], {}, "--sweep needs a sweep file"),
    (["--filter"], {}, "--filter needs an expression"),
    ([], {"PEER_SEQ": "128K"}, "PEER_SEQ must be whole numbers >= 1 separated by commas"),
    ([], {"PEER_SEQ": "1024,,2048"}, "PEER_SEQ must be whole numbers"),
    ([], {"PEER_CP": "8,4"}, "PEER_CP must be whole numbers >= 1 separated by spaces"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, env, message):
    out = tmp_path / "out"
    run_env = dict(os.environ, OUT=str(out), BUILD_DIR=str(tmp_path / "build"), **env)
    proc = subprocess.run(["bash", str(SCRIPT), *args], env=run_env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert not out.exists()
    assert not (tmp_path / "build").exists()
