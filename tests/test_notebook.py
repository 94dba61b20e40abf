"""At home in a notebook (issue 18): every result shows as an HTML table and gives a DataFrame of
its own raw numbers; figures show inline; the example notebook runs from top to bottom."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pd = pytest.importorskip("pandas")

import estimator
from estimator.capture import capture
from estimator.chips import SideBySide, side_by_side
from estimator.cluster import predict_cluster
from estimator.errors import MissingDependencyError
from estimator.hardware import load_hardware
from estimator.model_source import load_model
from estimator.notebook_display import PANDAS_HINT, figure_png, format_value, html_table
from estimator.parallel_layout import parse_layout
from estimator.precision import get_precision
from estimator.study import Study
from estimator.system import load_system

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "roofline_in_a_notebook.ipynb"
A100, H100 = load_hardware("a100-80gb-sxm"), load_hardware("h100-sxm")
NUMERIC = pd.api.types.is_numeric_dtype


@pytest.fixture(scope="module")
def report():
    model, inputs, name = load_model("resnet18", batch=2, image=64)
    return estimator.estimate(model, inputs, hardware=A100, precision="amp-bf16", mode="train", model_name=name)


@pytest.fixture(scope="module")
def odd_names():
    """A model whose module path holds HTML's special characters."""
    with torch.device("meta"):
        model = nn.Sequential()
        model.add_module("lin<1>&", nn.Linear(16, 16))
        return estimator.estimate(model, (torch.empty(4, 16),), hardware=A100, mode="inference",
                                  model_name="net<b>")


@pytest.fixture(scope="module")
def cluster():
    model, inputs, name = load_model("gpt2", batch=1, seq=32)
    step = capture(model, inputs, mode="train", model_name=name, dispatch="cuda")
    return predict_cluster(step, load_system("dgx-h100"), H100, get_precision("amp-bf16"),
                           parse_layout("tp=2,dp=4", 8))


@pytest.fixture(scope="module")
def serving():
    transformers = pytest.importorskip("transformers")
    from estimator.serving import serve

    config = transformers.LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=500,
                                      max_position_embeddings=1024, architectures=["LlamaForCausalLM"])
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    return serve(model, config, "tiny<llama>", H100, get_precision("bf16"), prompt=64, generate=8, batches=[1, 2])


def _numeric(frame, columns):
    for column in columns:
        assert NUMERIC(frame[column]), (column, frame[column].dtype)


# ---- Report ------------------------------------------------------------------------------------
def test_report_frame_is_its_rows_in_raw_numbers(report):
    frame, rows = report.to_pandas(), report.rows()
    _numeric(frame, ["forward_flops", "backward_flops", "forward_bytes", "backward_bytes", "bytes",
                     "forward_time_s", "backward_time_s", "time_s", "roofline_time_s", "intensity_flops_per_byte",
                     "nodes"])
    assert list(frame.name) == [r.name for r in rows]
    assert list(frame.forward_flops) == [r.forward_flops for r in rows]
    assert frame.time_s.tolist() == pytest.approx([r.time_s for r in rows])
    totals = report.totals()
    # the rows hold every costed node: forward (with the loss), backward, and the optimizer's row
    assert frame.forward_flops.sum() == totals["forward_flops"]
    assert frame.backward_flops.sum() == totals["backward_flops"] + totals["optimizer_flops"]
    assert frame.bytes.sum() == totals["step_bytes"]
    parts_s = totals["forward_time_s"] + totals["backward_time_s"] + totals["optimizer_time_s"]
    assert frame.time_s.sum() == pytest.approx(parts_s, rel=1e-9)


def test_report_frame_by_type_and_html(report):
    by_type = report.to_pandas(by="type")
    assert set(by_type.name) == {r.name for r in report.rows("type")} and "Conv2d" in set(by_type.name)
    text = report._repr_html_()
    totals = report.totals()
    assert "resnet18 · a100-80gb-sxm · amp-bf16 · train · batch 2" in text
    assert format_value("step_time_s", totals["step_time_s"]) in text
    assert text.count("<tr>") == 1 + min(15, len(report.rows()))  # header and the top rows
    assert f"15 of {len(report.rows())} rows" in text


def test_strings_are_escaped_in_html_and_raw_in_the_frame(odd_names):
    text = odd_names._repr_html_()
    assert "lin&lt;1&gt;&amp;" in text and "net&lt;b&gt;" in text
    assert "lin<1>" not in text and "net<b>" not in text
    assert "lin<1>&" in set(odd_names.to_pandas().name)


# ---- chips side by side --------------------------------------------------------------------------
def test_side_by_side_is_a_list_with_a_table(report):
    rows = side_by_side(report.step, [A100, H100], "amp-bf16")
    assert isinstance(rows, SideBySide) and isinstance(rows, list) and len(rows) == 2
    assert rows == list(rows) and [r.chip for r in rows] == ["a100-80gb-sxm", "h100-sxm"]
    frame = rows.to_pandas()
    _numeric(frame, ["step_time_s", "throughput_samples_per_s", "utilization", "memory_peak_bytes",
                     "capacity_bytes", "throughput_tokens_per_s", "usd_per_million"])
    assert frame.step_time_s.tolist() == [r.step_time_s for r in rows]
    assert frame.memory_peak_bytes.tolist() == [r.peak_bytes for r in rows]
    assert frame.throughput_tokens_per_s.isna().all()  # an image model: None becomes NaN, not an object column
    text = rows._repr_html_()
    assert "a100-80gb-sxm" in text and "h100-sxm" in text and "chips side by side" in text


# ---- Study -----------------------------------------------------------------------------------------
def test_study_frame_is_its_points():
    study = Study(["resnet18"], [A100, H100], batches=[1, 2], image=64, chip_precisions={"h100-sxm": "amp-bf16"})
    points = study.points()
    frame = study.to_pandas()
    assert len(frame) == len(points) == 4
    _numeric(frame, ["flops", "bytes", "memory_bytes", "parameters", "predicted_s", "roofline_s",
                     "intensity_flops_per_byte", "predicted_samples_per_s", "measured_s"])
    assert frame.flops.tolist() == [p.flops for p in points]
    assert frame.predicted_s.tolist() == [p.predicted_s for p in points]
    assert frame.measured_s.isna().all()
    text = study._repr_html_()
    assert text.count("<tr>") == 1 + len(points) and "h100-sxm" in text and "amp-bf16" in text


# ---- cluster and serving ---------------------------------------------------------------------------
def test_cluster_frame_per_unit_and_summary(cluster):
    units = cluster.to_pandas()
    assert len(units) == len(cluster.units) and units.name.tolist() == [u.name for u in cluster.units]
    _numeric(units, ["forward_s", "backward_s", "tp_forward_s", "tp_backward_s", "trainable_elements"])
    assert units.backward_s.sum() == pytest.approx(sum(u.backward_s for u in cluster.units))
    summary = cluster.to_pandas(summary=True)
    assert len(summary) == 1
    _numeric(summary, ["step_time_s", "mfu", "memory_per_gpu_bytes", "communication_exposed_s", "collectives_tp_s"])
    assert summary.step_time_s[0] == cluster.step_time_s and summary.mfu[0] == cluster.mfu
    assert summary.collectives_dp_s[0] == cluster.collectives_s["dp"]
    text = cluster._repr_html_()
    assert text.count("<table>") == 2 and "tp=2 dp=4" in text


def test_serving_frame_per_batch(serving):
    frame = serving.to_pandas()
    assert frame.batch.tolist() == [1, 2]
    _numeric(frame, ["ttft_s", "time_per_token_s", "tokens_per_s_per_gpu", "prefill_flops", "kv_cache_bytes",
                     "memory_bytes"])
    assert frame.ttft_s.tolist() == [p.prefill.time_s for p in serving.points]
    assert frame.time_per_token_s.tolist() == [p.time_per_token_s for p in serving.points]
    assert frame.memory_bytes.tolist() == [serving.memory_bytes(b) for b in (1, 2)]
    assert frame.fits.dtype == bool
    assert "tiny&lt;llama&gt;" in serving._repr_html_()


# ---- shared machinery ------------------------------------------------------------------------------
def test_missing_pandas_is_one_clear_error(monkeypatch, report, cluster, serving):
    study = Study(["resnet18"], [A100], batches=[1], image=64)
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails
    calls = [report.to_pandas, side_by_side(report.step, [A100], "amp-bf16").to_pandas, study.to_pandas,
             cluster.to_pandas, serving.to_pandas]
    for call in calls:
        with pytest.raises(MissingDependencyError) as caught:
            call()
        assert str(caught.value) == PANDAS_HINT == "to_pandas() needs pandas: pip install 'torch-roofline[notebook]'"
        assert isinstance(caught.value, ImportError)
    assert "<table>" in report._repr_html_()  # the HTML needs no pandas


@pytest.mark.parametrize("column, value, text", [
    ("step_time_s", 0.00123, "1.23 ms"), ("forward_flops", 4.1e9, "4.1 GFLOP"), ("bytes", 25_600_000, "25.6 MB"),
    ("peak_flops_per_s", 9.89e14, "989 TFLOP/s"), ("utilization", 0.1234, "12.3%"),
    ("memory_bound_share", 0.5, "50.0%"),
    ("nodes", 12345, "12,345"), ("throughput_samples_per_s", 1234.56, "1,234.6"), ("max_batch", None, "-"),
    ("fits", True, "yes"), ("name", "a<b", "a<b"),
])
def test_cells_read_by_the_unit_in_the_column_name(column, value, text):
    assert format_value(column, value) == text


def test_html_table_escapes_titles_headers_and_cells():
    text = html_table([{"x<y": "<script>", "time_s": 2.0}], title="a & b", lines=("c > d",))
    assert "<script>" not in text and "&lt;script&gt;" in text and "x&lt;y" in text
    assert "a &amp; b" in text and "c &gt; d" in text and "2 s" in text


def test_figures_are_returned_and_render_as_png(report):
    from matplotlib.figure import Figure

    from estimator.plot_charts import breakdown
    from estimator.plot_roofline import chips_roofline, layer_roofline

    for fig in (layer_roofline([report]), chips_roofline([A100, H100, load_hardware("t4")]), breakdown(report)):
        assert isinstance(fig, Figure)
    assert figure_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


# ---- the example notebook --------------------------------------------------------------------------
def _outputs(nb, last_line: str) -> list:
    cells = [c for c in nb.cells if c.cell_type == "code" and c.source.strip().splitlines()[-1] == last_line]
    assert len(cells) == 1, last_line
    return cells[0].outputs


def test_notebook_is_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_runs_and_shows_tables_and_figures():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                            resources={"metadata": {"path": str(ROOT)}}).execute()  # raises on a failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    for last_line, marker in (("report", "resnet18 · h100-sxm · amp-bf16 · train · batch 8"),
                              ("study", "Study: 3 models"), ("flops_table", "estimated_over_formula")):
        html = [o.data["text/html"] for o in _outputs(nb, last_line) if "text/html" in o.get("data", {})]
        assert html and "<table" in html[0] and marker in html[0], last_line
    for last_line in ("layer_roofline([report, a100])", "chips_roofline(chips)", "models_overview(points)",
                      'models_roofline(points, study.chip("t4"), "amp-fp16")', 'latency_scatter(points, "t4")',
                      "correlation_heatmap(rho)", 'breakdown(report, style="pie")'):
        assert any("image/png" in o.get("data", {}) for o in _outputs(nb, last_line)), last_line
