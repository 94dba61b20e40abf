"""Every CSV and JSON file the tool writes holds raw numbers in SI units, named by their unit
(docs/exports.md): no thousands separators, percent signs, "1 : 2" ratios or unit suffixes in a
value; every numeric column or key says its unit (`_s`, `_bytes`, `_flops`, `_per_s`, `_w`,
`_usd`) or is a count or a dimensionless fraction or ratio by name. Formatting belongs to the
terminal tables and the report's pages only."""
import csv
import json
import re
from pathlib import Path

import pytest

from estimator.capture import capture
from estimator.cli import main
from estimator.hardware import load_hardware
from estimator.model_source import load_model
from estimator.report import evaluate
from estimator.report_build import ReportSettings, build_report

# A name is raw-numeric-safe when one of its "_"-separated words is a unit, a count or a
# dimensionless quantity, or when it is one of a few documented names.
UNITS = {"s", "bytes", "byte", "flops", "w", "usd", "macs"}
COUNTS = {"batch", "batches", "parameters", "tokens", "samples", "gpus", "nodes", "steps", "count", "elements",
          "chips", "nics", "accumulate", "image", "seq", "warmup", "runs", "size"}
DIMENSIONLESS = {"fraction", "share", "ratio", "utilization", "efficiency", "error", "spread", "mfu", "hfu", "mae",
                 "spearman"}
NAMED = {"dp", "tp", "pp", "ep", "in_situ_forward", "in_situ_backward"}  # parallel degrees; host cost multipliers
PARENTS = {"achievable"}  # hardware: fractions of the datasheet peaks (and their curves)
FORMATTED = re.compile(r"^\s*[-+]?(\d{1,3}(,\d{3})+(\.\d+)?|\d*\.?\d+)(e[-+]?\d+)?\s*(%|[A-Za-z/]+)?\s*$|\d\s*:\s*\d")


def named_by_unit(name: str) -> bool:
    words = set(name.lower().split("_"))
    return name in NAMED or bool(words & (UNITS | COUNTS | DIMENSIONLESS))


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_json(data, where: str, parent: str = "") -> int:
    """Every number under a key that names its unit (or under a parent that does); no string that
    is a formatted number. Returns how many numbers were looked at."""
    seen = 0
    if isinstance(data, dict):
        for key, value in data.items():
            if is_number(value) or (isinstance(value, list) and value and all(map(is_number, value))):
                assert named_by_unit(key) or named_by_unit(parent) or parent in PARENTS, \
                    f"{where}: numeric key {key!r} (under {parent!r}) names no unit"
                seen += 1
            else:
                seen += check_json(value, where, key if isinstance(value, (dict, list)) else parent)
    elif isinstance(data, list):
        seen += sum(check_json(item, where, parent) for item in data)
    elif isinstance(data, str):
        assert not FORMATTED.search(data) or len(data) > 40, f"{where}: {data!r} is a number formatted as text"
    return seen


def read_csv(path: Path) -> list[dict]:
    """The rows, after checking every cell: blank, a plain float, or text that is not a formatted number."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows, path
    for column in rows[0]:
        assert re.fullmatch(r"[a-z0-9_]+", column), f"{path.name}: header {column!r} is not snake_case"
    numeric = set()
    for row in rows:
        for column, cell in row.items():
            try:
                float(cell)
                numeric.add(column)
            except ValueError:
                assert cell == "" or not FORMATTED.search(cell), f"{path.name}: {column} = {cell!r} is formatted"
    for column in numeric:
        assert path.name == "correlation.csv" or named_by_unit(column), f"{path.name}: {column!r} names no unit"
    return rows


def run_json(capsys, *argv: str):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


# ---- roofline report: tables/*.csv and report.json ------------------------------------------
@pytest.fixture(scope="module")
def report_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    settings = ReportSettings(models=["resnet18"], chips=[load_hardware("a100-80gb-sxm")], batches=[1, 2, 4],
                              train_batch=2, image=64, svg=False)
    return out, build_report(settings, out)


def test_report_tables_are_raw_si(report_out):
    out, data = report_out
    tables = {p.name: read_csv(p) for p in (out / "tables").glob("*.csv")}
    assert set(tables) == {"chips.csv", "points.csv", "forward_backward.csv", "correlation.csv"}
    a100 = load_hardware("a100-80gb-sxm")
    chip = next(r for r in tables["chips.csv"] if r["chip"] == a100.id)
    assert float(chip["peak_flops_per_s"]) == a100.matrix_flops_per_s["bf16"] and chip["peak_precision"] == "bf16"
    assert float(chip["memory_capacity_bytes"]) == a100.memory_capacity_bytes
    assert float(chip["ridge_flops_per_byte"]) == pytest.approx(a100.matrix_flops_per_s["bf16"] / a100.memory_bytes_per_s)
    # each points.csv row holds report.json's point (the API's StudyPoint.to_dict) to the last digit
    for row, point in zip(tables["points.csv"], data["points"], strict=True):
        for column in ("flops", "parameters", "memory_bytes", "predicted_s", "memory_bound_share",
                       "intensity_flops_per_byte", "predicted_samples_per_s"):
            assert float(row[column]) == point[column], column
        assert row["measured_s"] == "" and point["measured_s"] is None  # not measured: blank, not "-" or 0
    split, = tables["forward_backward.csv"]
    assert float(split["flops_ratio"]) == pytest.approx(float(split["backward_flops"]) / float(split["forward_flops"]))
    assert 1.5 < float(split["flops_ratio"]) < 2.5  # backward about twice the forward, as a plain float
    assert float(split["forward_s"]) == data["phase_splits"][0]["forward_s"]
    assert check_json(json.loads((out / "report.json").read_text()), "report.json") > 50


def test_report_pages_still_format_for_people(report_out):
    markdown = (report_out[0] / "report.md").read_text()
    assert "| peak TFLOP/s (16-bit or fp32) |" in markdown and "| 1 : 1." in markdown
    assert re.search(r"\| resnet18 \| 1 \| a100-80gb-sxm \| 0\.30 \| 11\.7 \|", markdown)  # GFLOPs, params M


# ---- JSON on stdout or --json FILE ----------------------------------------------------------
def test_estimate_json_matches_the_api(capsys):
    data = run_json(capsys, "estimate", "resnet18", "--batch", "2", "--image", "64", "--train", "--hardware",
                    "a100-80gb-sxm", "--json", "-")
    check_json(data, "estimate")
    model, inputs, name = load_model("resnet18", batch=2, image=64)
    report = evaluate(capture(model, inputs, mode="train", model_name=name), load_hardware("a100-80gb-sxm"), "fp32")
    assert data["totals"]["step_time_s"] == pytest.approx(report.totals()["step_time_s"], rel=1e-12)
    first = report.rows()[0]
    assert (data["layers"][0]["name"], data["layers"][0]["forward_time_s"]) == \
        (first.name, pytest.approx(first.forward_time_s, rel=1e-12))
    assert 0 < data["totals"]["utilization"] < 1  # a fraction, not a percentage
    assert data["memory"]["peak_bytes"] > data["memory"]["parameters_bytes"] == 4 * data["totals"]["parameters"]


def test_estimate_several_chips_and_cluster_json(capsys):
    data = run_json(capsys, "estimate", "resnet18", "--batch", "2", "--image", "64", "--hardware",
                    "a100-80gb-sxm,h100-sxm", "--json", "-")
    check_json(data, "estimate side by side")
    assert all(0 < c["utilization"] < 1 and c["memory_peak_bytes"] > 0 for c in data["chips"])
    data = run_json(capsys, "estimate", "gpt2", "--seq", "64", "--batch", "2", "--train", "--precision", "amp-bf16",
                    "--hardware", "dgx-h100", "--gpus", "16", "--parallel", "tp=2,dp=8,sp", "--train-tokens", "1e9",
                    "--price-per-gpu-hour", "2", "--json", "-")
    check_json(data, "estimate cluster")
    run, cluster = data["training_run"], data["cluster"]
    assert run["time_s"] == pytest.approx(run["steps"] * cluster["step_time_s"])  # seconds, not days
    assert run["gpu_time_s"] == pytest.approx(run["time_s"] * 16)


def test_hardware_json(capsys):
    for argv in (("hardware", "list", "--json"), ("hardware", "show", "h100-sxm", "--json"),
                 ("hardware", "systems", "--json")):
        assert check_json(run_json(capsys, *argv), " ".join(argv)) > 5
    chip = run_json(capsys, "hardware", "show", "h100-sxm", "--json")
    assert chip["memory_bytes_per_s"] == load_hardware("h100-sxm").memory_bytes_per_s


def test_required_and_serve_json(capsys):
    data = run_json(capsys, "required", "resnet18", "--batch", "2", "--image", "64", "--throughput", "1000",
                    "--hardware", "a100-80gb-sxm", "--json", "-")
    check_json(data, "required")
    assert 0 < data["chips"][0]["rule_peak_ratio"] < 1
    data = run_json(capsys, "serve", "gpt2", "--hardware", "a100-80gb-sxm", "--prompt", "64", "--generate", "8",
                    "--batch", "1,4", "--json", "-")
    check_json(data, "serve")


def test_models_json(capsys, monkeypatch):
    import roofline_zoo
    monkeypatch.setattr(roofline_zoo, "ZOO", {n: roofline_zoo.ZOO[n] for n in ("resnet18", "gpt2")})
    rows = run_json(capsys, "models", "--json")
    check_json(rows, "models")
    resnet = next(r for r in rows if r["name"] == "resnet18")
    assert resnet["forward_flops"] > 1e9 and resnet["default_image"] == 224  # FLOPs, not GFLOPs


def test_measure_and_compare_json(capsys, tmp_path):
    path = tmp_path / "measure.json"
    code = main(["measure", "--model", "resnet18", "--image", "64", "--batch", "1", "--warmup", "0", "--runs", "1",
                 "--peak", "datasheet", "--hardware", "xeon-8480", "--json", str(path)])
    assert code == 0, capsys.readouterr().err
    row, = json.loads(path.read_text())
    check_json(row, "measure")
    assert row["peak_flops_per_s"] == load_hardware("xeon-8480").matrix_flops_per_s["fp32"]
    assert row["delivered_flops_per_s"] == pytest.approx(row["flops"] / row["latency_s"])
    assert row["error"] == pytest.approx(row["predicted_s"] / row["latency_s"] - 1)  # a fraction, not percent
    path = tmp_path / "compare.json"
    code = main(["compare", "resnet18", "--batch", "1", "--image", "64", "--hardware", "xeon-8480", "--warmup", "0",
                 "--runs", "1", "--json", str(path)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(path.read_text())
    check_json(data, "compare")
    assert data["predicted_total_s"] == pytest.approx(sum(r["predicted_s"] for r in data["layers"]), rel=1e-6)
