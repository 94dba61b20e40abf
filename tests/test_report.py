"""`roofline report` and `roofline plot`: the folder they write, what the page shows (looked at
in headless Chromium), measured points and refused batches, and clear errors for bad input."""
import base64
import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from estimator.cli import main
from estimator.errors import RooflineError
from estimator.hardware import catalog_dir, load_hardware
from estimator.report_build import ReportSettings, build_report, work_units
from estimator.report_page import Figure, Section, Table, write_pages

MODELS = "resnet18,mobilenet_v2,gpt2"
SMALL = ["--image", "32", "--seq", "16"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def not_blank(path: Path) -> bool:
    """An image with real content: several colours and a few percent of non-white pixels."""
    image = Image.open(path).convert("RGB")
    image.thumbnail((400, 400))
    pixels = np.asarray(image).reshape(-1, 3).astype(int)
    non_white = (pixels.sum(axis=1) < 720).mean()
    return len(np.unique(pixels, axis=0)) > 20 and non_white > 0.03


@pytest.fixture
def local_chip(tmp_path, monkeypatch):
    """A calibrated-looking `local` chip (the i9 catalog sheet under id local), for --measure."""
    data = yaml.safe_load((catalog_dir() / "i9-10940x.yaml").read_text())
    data["id"] = "local"
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("ROOFLINE_LOCAL_HARDWARE", str(path))
    return path


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    settings = ReportSettings(models=MODELS.split(","), chips=[load_hardware("a100-80gb-sxm"), load_hardware("t4")],
                              batches=[1, 2], train_batch=2, image=32, seq=16, svg=False)
    calls = []
    data = build_report(settings, out, calls.append)
    return out, data, calls, settings


def test_report_folder_has_every_part(report_dir):
    out, data, calls, settings = report_dir
    assert len(calls) == work_units(settings)  # the progress bar's total is right
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    expected = {"chips.png", "models.png", "correlation.png"} | {f"{kind}_{chip}.png" for kind in
                                                                   ("models_roofline", "scatter")
                                                                   for chip in ("a100-80gb-sxm", "t4")} | \
        {f"{kind}_{m}.png" for kind in ("breakdown", "roofline") for m in MODELS.split(",")}
    assert set(figures) == expected
    for name in figures:
        assert not_blank(out / "figures" / name), name
    html = (out / "report.html").read_text()
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(embedded) == len(expected)  # self-contained: every figure inside the page
    assert all(base64.b64decode(e)[:8] == b"\x89PNG\r\n\x1a\n" for e in embedded)
    markdown = (out / "report.md").read_text()
    assert all(f"](figures/{name})" in markdown for name in figures)
    with (out / "tables" / "points.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2 * 2 == len(data["points"])
    with (out / "tables" / "forward_backward.csv").open() as f:
        splits = list(csv.DictReader(f))
    assert len(splits) == 3 * 2
    assert all(1.0 < float(row["flops_ratio"]) < 4.0 for row in splits)  # raw backward / forward, not "1 : 2.00"
    assert "| 1 : " in (out / "report.md").read_text()  # the page still shows it for people
    saved = json.loads((out / "report.json").read_text())
    assert saved["points"] == json.loads(json.dumps(data["points"]))
    assert list(saved["comments"]) == ["1. Chips", "2. Models: compute, memory and intensity",
                                       "3-4. Latency, throughput and the gap to peak", "5.1 Training: forward vs backward",
                                       "5.2 Where a training step's time goes, per layer type", "Per-layer rooflines"]
    assert any("sit left of the ridge" in line for line in saved["comments"]["2. Models: compute, memory and intensity"])


def test_report_page_renders_in_headless_chromium(report_dir, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (the README's test set-up installs Debian's chromium where apt-get "
                    "works); the HTML page is not looked at")
    out = report_dir[0]
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1280,2400", (out / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    assert Image.open(shot).size == (1280, 2400)
    assert not_blank(shot)


def test_write_pages_tables_and_figures(tmp_path):
    (tmp_path / "figures").mkdir()
    Image.new("RGB", (30, 20), "red").save(tmp_path / "figures" / "a.png")
    table = Table("T", ("model", "ms"), [("resnet50", 1.5e-3), ("a<b", None)], "t.csv", ("model", "time_s"),
                  (None, lambda s: f"{s * 1e3:,.1f}"))
    html_path, md_path = write_pages("Title", "ctx", [Section("S", ["para & more"], [Figure("figures/a.png", "cap")],
                                                              [table], folded=True)], tmp_path)
    html = html_path.read_text()
    assert "para &amp; more" in html and "a&lt;b" in html and "<details>" in html
    assert "| resnet50 | 1.5 |" in md_path.read_text() and "| a<b |  |" in md_path.read_text()
    assert list(csv.reader((tmp_path / "tables" / "t.csv").open())) == [["model", "time_s"], ["resnet50", "0.0015"],
                                                                         ["a<b", ""]]


def test_report_with_measure_adds_measured_points_and_notes_refusals(capsys, tmp_path, local_chip, monkeypatch):
    import estimator.measure as measure_module

    real_check = measure_module.check_fits

    def batch_2_does_not_fit(step, zoo_name, device):
        if step.mode == "inference" and step.batch == 2:
            raise RooflineError(f"{zoo_name} batch 2 needs about 9 GB but only 0 GB is free on cpu")
        return real_check(step, zoo_name, device)

    monkeypatch.setattr(measure_module, "check_fits", batch_2_does_not_fit)
    code, out, err = run(capsys, "report", "--models", MODELS, "--hardware", "local,a100-80gb-sxm", "--batch", "1,2",
                         "--train-batch", "2", "--measure", "--warmup", "0", "--runs", "1",
                         "--out", str(tmp_path / "r"), *SMALL)
    assert code == 0, err
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    local = [p for p in data["points"] if p["chip"] == "local"]
    assert all(p["measured_s"] > 0 for p in local if p["batch"] == 1)
    assert all(p["measured_s"] is None and "is free" in p["measured_note"] for p in local if p["batch"] == 2)
    assert all(s["measured_forward_s"] > 0 for s in data["phase_splits"] if s["chip"] == "local")
    assert (tmp_path / "r" / "figures" / "scatter_local_measured.png").is_file()
    assert not list((tmp_path / "r" / "figures").glob("*.svg"))  # SVGs only with --svg
    assert "not measured" in (tmp_path / "r" / "report.html").read_text()


@pytest.mark.parametrize("argv, message", [
    (["report", "--models", "resnet5", "--hardware", "a100-80gb-sxm", "--out", "x"], "unknown model 'resnet5'"),
    (["report", "--models", MODELS, "--hardware", "h10", "--out", "x"], "unknown hardware 'h10'"),
    (["report", "--models", MODELS, "--hardware", "a100-80gb-sxm", "--batch", "0", "--out", "x"], "--batch"),
    (["report", "--models", MODELS, "--hardware", "a100-80gb-sxm", "--measure", "--out", "x"], "add local"),
    (["report", "--models", MODELS, "--hardware", "t4", "--precision", "fp8", "--out", "x"], "no fp8"),
    (["plot", "chips", "--out", "chips.jpg"], "must end in .png or .svg"),
    (["plot", "roofline", "--out", "r.png"], "needs a MODEL"),
    (["plot", "models", "resnet18", "--out", "m.png"], "takes no MODEL"),
    (["plot", "breakdown", "resnet18", "--batch", "1,2", "--out", "b.png"], "one --batch"),
    (["plot", "scatter", "--hardware", "t4,a100-80gb-sxm", "--out", "s.png"], "one chip"),
    (["plot", "roofline", "resnet18", "--hardware", "t4@fp9", "--out", "r.png"], "unknown precision 'fp9'"),
    (["plot", "roofline", "resnet18", "--hardware", "t4,i9-10940x@bf16", "--out", "r.png"], "i9-10940x has no bf16"),
    (["plot", "chips", "--hardware", "t4@bf16", "--out", "c.png"], "one precision"),
])
def test_bad_input_is_one_clear_error(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_plot_out_folder_must_exist(capsys, tmp_path):
    code, _, err = run(capsys, "plot", "chips", "--out", str(tmp_path / "missing" / "c.png"))
    assert code == 2 and "does not exist" in err


@pytest.mark.parametrize("kind, args", [
    ("chips", []),
    ("roofline", ["resnet18", "--hardware", "a100-80gb-sxm@amp-bf16,t4", "--train", "--batch", "2", "--image", "32"]),
    ("breakdown", ["gpt2", "--train", "--style", "bar", "--seq", "16"]),
    ("models", ["--models", MODELS, "--batch", "1,2", *SMALL]),
    ("models-roofline", ["--models", MODELS, "--batch", "1,2", "--hardware", "t4", *SMALL]),
    ("scatter", ["--models", MODELS, "--batch", "1,2", *SMALL]),
    ("correlation", ["--models", MODELS, "--batch", "1,2", "--hardware", "t4,a100-80gb-sxm", *SMALL]),
])
def test_every_plot_kind_writes_a_picture(capsys, tmp_path, kind, args):
    out = tmp_path / f"{kind}.png"
    code, stdout, err = run(capsys, "plot", kind, *args, "--out", str(out))
    assert code == 0, err
    assert f"wrote {out}" in stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not_blank(out)


def test_plot_svg(capsys, tmp_path):
    out = tmp_path / "chips.svg"
    code, _, err = run(capsys, "plot", "chips", "--hardware", ",".join(p.stem for p in
                                                                         sorted(catalog_dir().glob("*.yaml"))[:10]),
                       "--out", str(out))
    assert code == 0, err
    import xml.etree.ElementTree as ET

    assert ET.parse(out).getroot().tag.endswith("svg")


def test_plot_roofline_measured_layers_on_the_local_chip(capsys, tmp_path, local_chip):
    out = tmp_path / "measured.png"
    code, _, err = run(capsys, "plot", "roofline", "resnet18", "--hardware", "local", "--measure", "--warmup", "0",
                       "--runs", "1", "--image", "32", "--out", str(out))
    assert code == 0, err
    assert not_blank(out)
    code, _, err = run(capsys, "plot", "roofline", "resnet18", "--hardware", "t4", "--measure", "--image", "32",
                       "--out", str(out))
    assert code == 2 and "make local the first chip" in err


def test_report_with_too_few_pairs_for_a_correlation_says_so(tmp_path):
    settings = ReportSettings(models=["resnet18", "mobilenet_v2"], chips=[load_hardware("t4")], batches=[1],
                              train_batch=2, image=32, svg=False)
    calls = []
    data = build_report(settings, tmp_path, calls.append)
    assert len(calls) == work_units(settings)
    assert data["correlation"] is None and not (tmp_path / "figures" / "correlation.png").exists()
    assert any("No rank correlation" in line and "at least 3" in line
               for line in data["comments"]["3-4. Latency, throughput and the gap to peak"])


def test_an_incomplete_count_is_said_first_and_in_the_json():
    """Ops without a cost rule: a banner above the table and `complete: false` in the JSON,
    not only the list at the bottom; a fully costed step says `complete: true` and no banner."""
    import torch
    from rich.console import Console
    from torch import nn

    from estimator.capture import capture
    from estimator.hardware import load_hardware
    from estimator.render import full_report
    from estimator.report import evaluate

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(8, 8)

        def forward(self, x):
            return torch.kthvalue(self.proj(x), 2).values  # kthvalue: no rule

    for model, complete in ((Odd(), False), (nn.Linear(8, 8), True)):
        report = evaluate(capture(model, (torch.randn(4, 8),), mode="inference"), load_hardware("a100-80gb-sxm"), "fp32")
        assert report.to_dict()["complete"] is complete
        console = Console(record=True, width=200)
        console.print(full_report(report))
        text = console.export_text()
        assert text.lstrip().startswith("INCOMPLETE") is (not complete)
        if not complete:
            assert "1 op(s) of 1 kind(s) have no cost rule" in text.splitlines()[0]
