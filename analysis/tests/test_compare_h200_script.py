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
