"""The HTML run report: written by ``contrastkit fit``, self-contained, every figure rendered in a
real headless browser (Debian's chromium), a health verdict that flags a collapsed model, and a
report failure that never fails the run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from contrastkit.errors import ContrastkitError
from contrastkit.report import build_report, write_report
from contrastkit.train.cli import main
from contrastkit.train.run import load_run, write_report_safely
from contrastkit.train.rundir import RunDir

FAST = ["--threads", "1", "--no-progress", "--epochs", "2", "train.batch_size=128"]
# every figure of a complete run with its model and data (t-SNE is always installed: scikit-learn)
FIGURES = {
    "fig-loss",
    "fig-scores",
    "fig-score-histograms",
    "fig-spectrum",
    "fig-hardness",
    "fig-gap",
    "fig-shift",
    "fig-calibration",
    "fig-map-pca",
    "fig-map-tsne",
    "fig-neighbours",
}
SECTIONS = [
    "health",
    "evaluation",
    "training",
    "geometry",
    "spectrum",
    "hardness",
    "gap",
    "shift",
    "calibration",
    "maps",
    "neighbours",
    "config",
]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def figure_ids(page: str) -> set[str]:
    return set(re.findall(r'<figure class="plot" id="([^"]+)"', page))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "digits"
    assert main(["fit", "--out", str(out), *FAST]) == 0
    return out


@pytest.fixture(scope="module")
def logs_scores(finished_run) -> bool:
    """Whether the trainer exposes ``method.last_step`` (the score statistics need it)."""
    return "pos_score_mean" in (finished_run / "metrics.csv").read_text()


def expected_figures(logs_scores: bool) -> set[str]:
    return FIGURES if logs_scores else FIGURES - {"fig-scores", "fig-score-histograms"}


def test_fit_writes_a_self_contained_report(finished_run, logs_scores):
    page = (finished_run / "report.html").read_text()
    assert figure_ids(page) == expected_figures(logs_scores)
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    assert "could not be computed" not in page and "Not available" not in page
    # self-contained: no stylesheet, script or image from anywhere else
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert "<link" not in page and "@import" not in page
    # the health summary comes first and says whether the run is healthy
    assert page.index('id="health"') < page.index('id="evaluation"')
    verdict = re.search(r'data-verdict="(ok|warn|fail)"', page)
    assert verdict is not None
    assert page.count('class="badge ') == 9  # one per check
    assert "training finished" in page and "kNN vs raw inputs" in page
    assert not list(finished_run.glob(".report.html.*"))  # no temporary file left


def _chromium(*args: str, user_data: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's chromium is not installed (/usr/bin/chromium): `apt-get install -y chromium` "
            "(make test does it) to run the browser test."
        )
    return subprocess.run(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={user_data}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_report_renders_in_headless_chromium(finished_run, logs_scores, tmp_path):
    url = (finished_run / "report.html").resolve().as_uri()
    dom = _chromium("--virtual-time-budget=10000", "--dump-dom", url, user_data=tmp_path / "a")
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the page's script marks each figure once its image has decoded with a non-zero size
    body = re.search(r'<body data-figures="(\d+)" data-rendered="(\d+)"', dom.stdout)
    assert body is not None, "the page's load script did not run"
    expected = expected_figures(logs_scores)
    assert int(body.group(1)) == int(body.group(2)) == len(expected)
    rendered = dict(
        re.findall(r'<figure class="plot" id="([^"]+)" data-rendered="(\w+)"', dom.stdout)
    )
    assert rendered == dict.fromkeys(expected, "yes")
    sizes = re.findall(r'data-size="(\d+)x(\d+)"', dom.stdout)
    assert len(sizes) == len(expected) and all(int(w) > 100 and int(h) > 100 for w, h in sizes)

    shot = tmp_path / "report.png"
    result = _chromium(
        "--window-size=1280,1800", f"--screenshot={shot}", url, user_data=tmp_path / "b"
    )
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (1800, 1280)
    assert pixels.std() > 20  # not a blank page
    # the verdict banner is drawn in one of its three colours near the top
    banners = [(0x1A, 0x7F, 0x37), (0x9A, 0x67, 0x00), (0xCF, 0x22, 0x2E)]
    top = pixels[:400].reshape(-1, 3)
    assert any((np.abs(top - c).sum(axis=1) < 6).sum() > 5000 for c in banners)
    if os.environ.get("CONTRASTKIT_SAVE_SCREENSHOT"):
        docs = Path(__file__).resolve().parents[1] / "docs"
        docs.mkdir(exist_ok=True)
        shutil.copyfile(shot, docs / "report.png")


def test_report_command(finished_run, tmp_path, capsys):
    out = tmp_path / "copy.html"
    assert main(["report", str(finished_run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert figure_ids(out.read_text()) == figure_ids((finished_run / "report.html").read_text())
    for args, phrase in [
        (["report", str(tmp_path / "nowhere")], "not a contrastkit run directory"),
        (["report", str(finished_run), "--out", str(tmp_path / "x.txt")], "must end in .html"),
    ]:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert phrase in err and err.count("\n") == 1


def test_health_flags_a_collapsed_model(finished_run, tmp_path):
    _, _, method, data = load_run(finished_run)
    last = [m for m in method.head.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # every projector output becomes the bias: complete collapse
        last.weight.zero_()
        last.bias.copy_(torch.linspace(-1, 1, len(last.bias)))
    page = build_report(finished_run, method=method, data=data, map_methods=["pca"])
    assert 'data-verdict="fail"' in page
    rows = re.findall(r'class="badge (\w+)">[^<]*</span></td><td>([^<]+)</td>', page)
    status = {name: badge for badge, name in rows}
    assert status["complete collapse"] == "fail" and status["uniformity"] == "fail"
    assert status["positive–negative gap"] == "fail"


def test_report_without_the_model_uses_the_run_files(finished_run, tmp_path):
    run = tmp_path / "files-only"
    shutil.copytree(finished_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["source"] = "in-memory:arrays"  # the data cannot be reloaded
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert "were not given" in build_report(run, map_methods=["pca"])
    assert main(["report", str(run)]) == 0  # the CLI loads the run, and says why it cannot
    page = (run / "report.html").read_text()
    assert "in-memory data" in page  # the reason is shown
    assert {
        "fig-loss",
        "fig-spectrum",
        "fig-shift",
        "fig-calibration",
        "fig-map-pca",
    } <= figure_ids(page)
    assert {"fig-hardness", "fig-gap", "fig-neighbours"}.isdisjoint(figure_ids(page))
    assert "could not be computed" not in page
    assert re.search(r'data-verdict="(ok|warn|fail)"', page)
    with pytest.raises(ContrastkitError, match="not a contrastkit run directory"):
        build_report(tmp_path)


def test_a_failed_report_never_fails_the_run(finished_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = (run / "report.html").read_bytes()
    _, task, method, data = load_run(run)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("contrastkit.report.write_report", broken)
    with pytest.warns(UserWarning, match="report could not be written.*disk on fire"):
        write_report_safely(RunDir(run), task, method, data)
    assert RunDir(run).status()["state"] == "complete"
    assert (run / "report.html").read_bytes() == before
    # a report that breaks half-way (after some figures) leaves the previous file intact
    monkeypatch.undo()
    monkeypatch.setattr("contrastkit.report.build.render", broken)
    with pytest.raises(RuntimeError):
        write_report(run, method=method, data=data, map_methods=["pca"])
    assert (run / "report.html").read_bytes() == before
    assert not list(run.glob(".report.html.*"))
