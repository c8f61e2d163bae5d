import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analysis.tests.conftest import ROOT, assert_png


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.links = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src"))
        elif tag == "a":
            self.links.append(a.get("href"))


def refs(html: str) -> _Refs:
    p = _Refs()
    p.feed(html)
    return p


def report(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.report", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny_report(tiny_run) -> Path:
    r = report(tiny_run)
    assert r.returncode == 0, r.stderr
    return tiny_run / "report.html"


def test_report_html(tiny_report):
    html = tiny_report.read_text()
    run = tiny_report.parent
    r = refs(html)
    assert len(r.imgs) == 6  # 4 table plots + 2 timelines (model vs measured is skipped)
    for src in r.imgs:
        assert not Path(src).is_absolute()
        assert_png(run / src)
    assert {Path(s).parent.name for s in r.imgs} == {"plots"}
    traces = [h for h in r.links if h.startswith("traces/")]
    assert len(traces) == 72 and all((run / h).is_file() for h in traces)
    assert html.count("<tr") > 72
    for text in ("Machine and versions", "ring_pass_q", "&rarr; ring_pass_kv", "pass (rel",
                 "Cost model vs measured</b>: skipped", "Yang et al. 2024"):
        assert text in html, text


def test_report_on_parent_and_gpu_run(gpu_run):
    r = report(gpu_run.parent)
    assert r.returncode == 0, r.stderr
    html = (gpu_run.parent / "report.html").read_text()
    assert "NVIDIA H200" in html and "NCCL" in html
    for src in refs(html).imgs:
        assert_png(gpu_run.parent / src)


@pytest.mark.parametrize("make", ["missing", "empty", "bad_manifest"])
def test_report_bad_folder_exits_2(tmp_path, make):
    target = tmp_path / "x"
    if make != "missing":
        target.mkdir()
    if make == "bad_manifest":
        (target / "manifest.json").write_text("{not json")
    r = report(target)
    assert r.returncode == 2
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("report: error:")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None,
                    reason="chromium is not installed (scripts/bootstrap.sh installs Debian's "
                           "chromium package)")
def test_report_in_headless_chromium(tiny_report, tmp_path):
    base = [_chromium(), "--headless", "--disable-gpu", "--no-sandbox",
            f"--user-data-dir={tmp_path / 'profile'}"]
    url = tiny_report.resolve().as_uri()
    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert re.search(r"<h1>cpbench report: tiny</h1>", dom.stdout)
    imgs = refs(dom.stdout).imgs
    assert len(imgs) == 6
    for src in imgs:
        assert_png(tiny_report.parent / src)
    shot = tmp_path / "shot.png"
    r = subprocess.run(base + [f"--screenshot={shot}", "--window-size=1400,2000", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert_png(shot)
