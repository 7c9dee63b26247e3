"""`boltzpath report`: one self-contained offline HTML page; rendered in headless Chromium."""

import json
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from boltzpath.cli import cli

SMALL = ["--set", "sampler.chains=16", "--set", "sampler.burn_in=20", "--set", "sampler.thin=1", "--quiet"]
CHECK = """<script>window.__errors=[];addEventListener('error',e=>window.__errors.push(String(e.message||e)));
addEventListener('load',()=>{const im=[...document.images];
document.body.setAttribute('data-check',JSON.stringify({images:im.length,
loaded:im.filter(i=>i.complete&&i.naturalWidth>0).length,errors:window.__errors}));});</script>"""


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    for name, method in (("mala", "mala"), ("hmc", "hmc")):
        res = run("sample", "--target", "gmm40", "--method", method, "--n", 64, "--out", tmp / name, *SMALL)
        assert res.exit_code == 0, res.output
    res = run("report", tmp / "mala", tmp / "hmc", "--out", tmp / "report.html")
    assert res.exit_code == 0, res.output
    return tmp / "report.html"


def test_report_is_self_contained_and_complete(report):
    page = report.read_text()
    assert "<h2>Metrics</h2>" in page and "energy evaluations" in page and "floor" in page
    assert "Cost and quality" in page and "Config differences" in page and "sampler.n_leapfrog" in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) >= 5 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(href|src)="(https?:)?//', page)  # nothing fetched from a network


def test_report_bad_inputs(tmp_path, report):
    res = run("report", tmp_path / "nowhere", "--out", tmp_path / "r.html")
    assert res.exit_code == 2 and "no run folder" in res.output
    res = run("report", report.parent / "mala", "--out", tmp_path / "r.txt")
    assert res.exit_code == 2 and ".html" in res.output


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="headless Chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report):
    checked = report.with_name("checked.html")
    checked.write_text(report.read_text().replace("<head>", "<head>" + CHECK, 1))
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()],
                          capture_output=True, text=True, timeout=120)
    m = re.search(r'data-check="([^"]*)"', proc.stdout)
    assert m, proc.stderr[-2000:]
    check = json.loads(m.group(1).replace("&quot;", '"'))
    assert check["images"] >= 5 and check["loaded"] == check["images"], check  # naturalWidth > 0
    assert check["errors"] == []
    assert not [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln], proc.stderr


def test_a_row_of_panels_is_shown_at_page_width(tmp_path):
    # PITA's ladder.png is four panels in a row; as a 560-px thumbnail its axes are unreadable
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from boltzpath.report.html import _is_wide

    sizes = {"wide": (14, 3), "square": (5, 4), "just_twice": (8, 4)}
    for name, size in sizes.items():
        fig = plt.figure(figsize=size, dpi=50)
        fig.savefig(tmp_path / f"{name}.png")
        plt.close(fig)
    assert _is_wide((tmp_path / "wide.png").read_bytes())
    assert not _is_wide((tmp_path / "square.png").read_bytes())
    assert not _is_wide((tmp_path / "just_twice.png").read_bytes())  # exactly 2:1 stays a thumbnail
    assert not _is_wide(b"not a png at all, but long enough to read")
