"""`roofline estimate` as a user runs it: tables, JSON, and one clear message for bad input."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from estimator.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_estimate_prints_layers_and_totals(capsys):
    code, out, err = run(capsys, "estimate", "resnet50", "--hardware", "a100-80gb-sxm", "--batch", "2", "--train",
                         "--top", "5")
    assert code == 0, err
    for text in ("layer", "fwd GFLOP", "bwd GFLOP", "bound", "step time", "samples/s", "utilization"):
        assert text in out
    assert "unsupported" not in out


def test_estimate_json_has_the_documented_fields(capsys, tmp_path):
    path = tmp_path / "r.json"
    code, _, err = run(capsys, "estimate", "gpt2", "--hardware", "h100-sxm", "--precision", "amp-bf16",
                       "--batch", "2", "--seq", "64", "--train", "--json", str(path))
    assert code == 0, err
    data = json.loads(path.read_text())
    assert {"model", "hardware", "precision", "mode", "batch", "totals", "layers", "unsupported"} <= set(data)
    assert (data["model"], data["hardware"], data["precision"], data["mode"], data["batch"]) == \
        ("gpt2", "h100-sxm", "amp-bf16", "train", 2)
    totals = data["totals"]
    for key in ("parameters", "forward_flops", "backward_flops", "forward_bytes", "backward_bytes",
                "forward_time_s", "backward_time_s", "step_time_s", "throughput_samples_per_s", "utilization"):
        assert totals[key] > 0, key
    # tokens/s = samples/s x sequence length for a token model
    assert totals["throughput_tokens_per_s"] == pytest.approx(totals["throughput_samples_per_s"] * 64)
    assert totals["step_time_s"] == pytest.approx(totals["forward_time_s"] + totals["backward_time_s"]
                                                  + totals["optimizer_time_s"] + totals["timeline"]["sync_s"])
    # the timeline: the step is the device's busy time plus its waits for the host plus the final sync
    line = totals["timeline"]
    assert line["step_time_s"] == pytest.approx(line["device_busy_s"] + line["host_bound_s"] + line["sync_s"])
    assert totals["execution"] == "eager" and totals["step_bound"] in ("host", "compute", "memory")
    # the default optimizer, AdamW, reads parameters, gradients and two moments and writes three, in fp32
    assert totals["optimizer"] == "adamw" and totals["optimizer_bytes"] == 7 * 4 * totals["trainable_parameters"]
    layer = data["layers"][0]
    assert {"name", "type", "forward_flops", "backward_flops", "bytes", "forward_time_s", "backward_time_s",
            "bound"} <= set(layer)
    # the rows add up to the totals (free ops carry nothing)
    assert sum(r["forward_flops"] for r in data["layers"]) == totals["forward_flops"]
    assert sum(r["backward_time_s"] for r in data["layers"]) == pytest.approx(totals["backward_time_s"]
                                                                         + totals["optimizer_time_s"])


@pytest.mark.parametrize("by", ["type", "op"])
def test_grouping_by_type_and_op(capsys, by):
    code, out, err = run(capsys, "estimate", "vit_b_16", "--batch", "1", "--by", by, "--json", "-")
    assert code == 0, err
    names = {r["name"] for r in json.loads(out)["layers"]}
    assert ("Linear" in names) if by == "type" else ("aten.addmm.default" in names)


def test_depth_groups_layer_paths(capsys):
    code, out, _ = run(capsys, "estimate", "resnet50", "--depth", "1", "--json", "-")
    names = {r["name"] for r in json.loads(out)["layers"]}
    assert {"layer1", "layer2", "layer3", "layer4", "conv1", "fc"} <= names


def test_user_factory_file(capsys, tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent("""
        import torch
        def make(batch=3):
            model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
            return model, (torch.randn(batch, 16),)
    """))
    code, out, err = run(capsys, "estimate", f"{path}:make", "--batch", "5", "--train", "--json", "-")
    assert code == 0, err
    data = json.loads(out)
    assert data["batch"] == 5
    # forward matmuls: 2*5*16*32 + 5*32 (bias) + 2*5*32*4 + 5*4
    linear_flops = sum(r["forward_flops"] for r in data["layers"] if r["type"] == "Linear")
    assert linear_flops == 2 * 5 * 16 * 32 + 5 * 32 + 2 * 5 * 32 * 4 + 5 * 4


BAD_INPUT = [
    (["estimate", "resnet5"], "unknown model 'resnet5'; did you mean 'resnet50'"),
    (["estimate", "resnet50", "--hardware", "h10"], "unknown hardware 'h10'; did you mean"),
    (["estimate", "resnet50", "--hardware", "v100-sxm2", "--precision", "bf16"], "v100-sxm2 has no bf16 matrix peak"),
    (["estimate", "resnet50", "--hardware", "a100-80gb-sxm", "--precision", "fp8"], "a100-80gb-sxm has no fp8"),
    (["estimate", "gpt2", "--seq", "2048"], "exceeds the model's 1024 positions"),
    (["estimate", "resnet50", "--batch", "0"], "--batch must be a positive integer"),
    (["estimate", "resnet50", "--seq", "128"], "takes images, not sequences"),
    (["estimate", "vit_b_16", "--image", "160"], "patches but the model was built for 196"),
    (["estimate", "nonexistent_file.py:make"], "model file 'nonexistent_file.py' does not exist"),
    (["estimate", "resnet50", "--hardware", "missing.yaml"], "hardware file 'missing.yaml' does not exist"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUT)
def test_bad_input_is_one_clear_message(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in " ".join(err.split())
    assert "Traceback" not in err


def test_failing_factory_and_wrong_return(capsys, tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("def boom():\n    raise RuntimeError('no weights here')\ndef wrong():\n    return 42\n")
    code, _, err = run(capsys, "estimate", f"{path}:boom")
    assert code == 2 and "raised RuntimeError: no weights here" in err
    code, _, err = run(capsys, "estimate", f"{path}:wrong")
    assert code == 2 and "must return (model, example_inputs)" in err
    code, _, err = run(capsys, "estimate", f"{path}:bom")
    assert code == 2 and "did you mean 'boom'" in err


def test_inputs_that_do_not_fit_the_model(capsys, tmp_path):
    path = tmp_path / "mismatch.py"
    path.write_text("import torch\ndef make():\n    return torch.nn.Linear(8, 4), (torch.randn(2, 9),)\n")
    code, _, err = run(capsys, "estimate", f"{path}:make")
    assert code == 2
    assert "running mismatch:make on inputs (float32[2, 9]) failed" in " ".join(err.split())


def test_malformed_yaml_from_the_command_line(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("id: x\nname: [oops\n")
    code, _, err = run(capsys, "estimate", "resnet50", "--hardware", str(path))
    assert code == 2 and "not valid YAML" in err


def test_strict_fails_on_unsupported_ops(capsys, tmp_path):
    path = tmp_path / "odd.py"
    # torch.linalg.inv has no cost rule: listed, and an error under --strict
    path.write_text("import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
                    "        return torch.linalg.inv(x)\ndef make():\n    return M(), (torch.randn(2, 4, 4),)\n")
    code, out, err = run(capsys, "estimate", f"{path}:make")
    assert code == 0 and "unsupported ops" in out and "aten.linalg_inv_ex.default" in out
    code, out, err = run(capsys, "estimate", f"{path}:make", "--json", "-")
    assert json.loads(out)["unsupported"][0]["op"] == "aten.linalg_inv_ex.default"
    code, _, err = run(capsys, "estimate", f"{path}:make", "--strict")
    assert code == 2 and "have no cost rule: aten.linalg_inv_ex.default x1" in err


def test_console_script_exits_nonzero_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "roofline_cli", "estimate", "resnet50", "--hardware", "tpu-v9"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown hardware 'tpu-v9'" in proc.stderr and "Traceback" not in proc.stderr


def test_console_entry_freezes_its_imports_and_library_use_keeps_gc_defaults():
    """`roofline` (roofline_cli.main) collects cycles still, but never walks what its imports
    made; `import estimator` in a user's process leaves the collector as Python set it."""
    from pathlib import Path

    assert 'roofline = "roofline_cli:main"' in (Path(__file__).parents[1] / "pyproject.toml").read_text()
    entry = ("import gc, sys, roofline_cli; sys.argv = ['roofline', 'hardware', 'list', '--json']; "
             "code = roofline_cli.main(); print(code, gc.isenabled(), gc.get_freeze_count() > 100_000, "
             "gc.get_threshold()[0], file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", entry], capture_output=True, text=True)
    assert proc.stderr.split()[-4:] == ["0", "True", "True", "20000"], proc.stderr[-300:]
    assert json.loads(proc.stdout)
    library = subprocess.run([sys.executable, "-c", "import gc, estimator; print(gc.isenabled(), "
                              "gc.get_freeze_count(), gc.get_threshold()[0])"], capture_output=True, text=True)
    assert library.stdout.split() == ["True", "0", "700"]


def test_hf_config_builds_on_meta_and_estimates(capsys, tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=1000, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                      architectures=["LlamaForCausalLM"])
    path = tmp_path / "config.json"
    path.write_text(config.to_json_string())
    code, out, err = run(capsys, "estimate", "--hf-config", str(path), "--batch", "2", "--seq", "64", "--train",
                         "--json", "-")
    assert code == 0, err
    data = json.loads(out)
    # 2 layers x (q, o: 128x128; k, v: 128x64; gate, up, down: 128x256) + 2 embeddings 1000x128 + norms
    layer = 2 * 128 * 128 + 2 * 128 * 64 + 3 * 128 * 256 + 2 * 128
    assert data["totals"]["parameters"] == 2 * layer + 2 * 1000 * 128 + 128
    assert data["totals"]["throughput_tokens_per_s"] == pytest.approx(data["totals"]["throughput_samples_per_s"] * 64)
    assert data["unsupported"] == []
    code, _, err = run(capsys, "estimate", "--hf-config", str(path), "--seq", "512")
    assert code == 2 and "sequence length 512 exceeds the model's 256 positions" in " ".join(err.split())
    code, _, err = run(capsys, "estimate", "--hf-config", str(tmp_path / "none.json"))
    assert code == 2 and "does not exist" in " ".join(err.split())
    code, _, err = run(capsys, "estimate", "--hf-config", str(path), "--hf-class", "LlamaForCausalLN")
    assert code == 2 and "transformers has no class 'LlamaForCausalLN'" in " ".join(err.split())


def test_torchvision_names_need_torchvision(capsys):
    code, _, err = run(capsys, "estimate", "torchvision:resnet50")
    if code == 0:
        pytest.skip("torchvision imports here")
    assert code == 2 and "needs the torchvision package" in " ".join(err.split())


def test_model_and_hf_config_are_exclusive(capsys):
    code, _, err = run(capsys, "estimate")
    assert code == 2 and "give a MODEL" in err


def test_models_lists_the_zoo_as_table_and_json(capsys, monkeypatch):
    import roofline_zoo
    # two entries keep the test fast; `roofline models` walks the whole zoo the same way
    monkeypatch.setattr(roofline_zoo, "ZOO", {n: roofline_zoo.ZOO[n] for n in ("resnet18", "gpt2")})
    code, out, err = run(capsys, "models", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["resnet18"]["parameters"] == 11_689_512  # torchvision ResNet18_Weights num_params
    assert rows["resnet18"]["forward_flops"] == pytest.approx(2 * 1.814e9, rel=0.03)  # 1.814 GMACs + BN/ReLU
    assert (rows["resnet18"]["default_image"], rows["gpt2"]["default_seq"]) == (224, 1024)
    assert rows["gpt2"]["default_input"] == "1024 tokens (vocab 50257)"
    code, out, err = run(capsys, "models")
    assert code == 0 and "resnet18" in out and "11,689,512" in out


def test_image_too_small_names_size_and_limit(capsys):
    code, _, err = run(capsys, "estimate", "resnet18", "--image", "16")
    assert code == 2 and "image 16x16 is too small for resnet18: it needs at least 32x32" in " ".join(err.split())


def test_hardware_list_and_show(capsys):
    code, out, _ = run(capsys, "hardware", "list", "--json")
    chips = {c["id"]: c for c in json.loads(out)}
    h100 = chips["h100-sxm"]
    # SI units: FLOP/s, bytes/s, bytes; ridge = peak / bandwidth
    assert h100["matrix_flops_per_s"]["bf16"] == pytest.approx(989.4e12)
    assert h100["memory_bytes_per_s"] == pytest.approx(3350e9) and h100["memory_capacity_bytes"] == pytest.approx(80e9)
    assert h100["ridge_point_flops_per_byte"]["bf16"] == pytest.approx(989.4e12 / 3350e9)
    code, out, _ = run(capsys, "hardware", "list")
    assert code == 0 and "h100-sxm" in out and "ridge" in out
    code, out, _ = run(capsys, "hardware", "show", "v100-sxm2")
    assert code == 0 and "sources" in out and "datasheet" in out.lower()
    code, out, _ = run(capsys, "hardware", "show", "a100-80gb-sxm", "--json")
    assert json.loads(out)["id"] == "a100-80gb-sxm"
    code, _, err = run(capsys, "hardware", "show", "h100-sxn")
    assert code == 2 and "did you mean 'h100-sxm'" in err


def test_measure_prints_the_efficiency_table(capsys, tmp_path):
    path = tmp_path / "rows.json"
    code, out, err = run(capsys, "measure", "--model", "resnet18", "--image", "64", "--batch", "1,2", "--warmup", "1",
                         "--runs", "2", "--peak", "datasheet", "--hardware", "xeon-8480", "--json", str(path))
    assert code == 0, err
    for text in ("GFLOPs", "delivered TFLOPS", "peak TFLOPS", "efficiency", "predicted ms", "threads"):
        assert text in out + err
    rows = json.loads(path.read_text())
    assert [r["batch"] for r in rows] == [1, 2]
    for r in rows:  # delivered = FLOPs / latency, efficiency = delivered / peak
        assert r["delivered_flops_per_s"] == pytest.approx(r["flops"] / r["latency_s"], rel=1e-3)
        assert r["efficiency"] == pytest.approx(r["delivered_flops_per_s"] / r["peak_flops_per_s"], rel=1e-3)


@pytest.mark.parametrize("argv, message", [
    (["measure", "--model", "resnet18", "--runs", "0", "--peak", "datasheet", "--hardware", "xeon-8480"],
     "--runs must be at least 1"),
    (["measure", "--model", "resnet18", "--device", "tpu", "--peak", "datasheet", "--hardware", "xeon-8480"], "tpu"),
    (["measure", "--model", "resnet18", "--peak", "datasheet"], "--peak datasheet needs --hardware"),
    (["measure", "--model", "resnet18", "--batch", "one"], "--batch takes comma-separated integers"),
    (["measure", "--model", "resnet5", "--peak", "datasheet", "--hardware", "xeon-8480"], "did you mean 'resnet50'"),
])
def test_measure_bad_input(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in " ".join(err.split())


def test_compare_per_layer_table_and_json(capsys, tmp_path):
    path = tmp_path / "cmp.json"
    code, out, err = run(capsys, "compare", "resnet18", "--hardware", "xeon-8480", "--batch", "1", "--image", "64",
                         "--train", "--warmup", "1", "--runs", "1", "--top", "5", "--json", str(path))
    assert code == 0, err
    assert "predicted ms" in out and "Spearman" in out and "time-weighted mean absolute error" in out
    data = json.loads(path.read_text())
    names = {r["name"] for r in data["layers"]}
    assert {"conv1", "layer1.0.conv1", "fc", "loss"} <= names
    code, _, err = run(capsys, "compare", "x.py:make", "--hardware", "xeon-8480")
    assert code == 2 and "zoo models only" in err


def test_calibrate_writes_a_yaml_that_estimates_use(capsys, tmp_path, monkeypatch):
    import estimator.calibrate as calibration
    full = calibration.calibrate
    # the "tiny" plan measures the same things on small sizes, so the test stays fast
    monkeypatch.setattr(calibration, "calibrate", lambda **kw: full(**kw, plan="tiny"))
    path = tmp_path / "local.yaml"
    code, out, err = run(capsys, "calibrate", "--quick", "--out", str(path))
    assert code == 0, err
    assert "Peak:" in out and "TFLOPS (cpu_blas fp32" in out and f"wrote {path}" in out
    code, out, err = run(capsys, "estimate", "resnet18", "--hardware", str(path), "--image", "64", "--json", "-")
    assert code == 0, err
    assert json.loads(out)["hardware"] == "local"


def test_calibrate_cuda_absent(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    code, _, err = run(capsys, "calibrate", "--device", "cuda")
    assert code == 2 and "no CUDA device is visible" in err


def test_hf_config_is_loaded_the_way_transformers_loads_it(capsys, tmp_path):
    """A directory, a config file written by save_pretrained, XLNet's max_position_embeddings of
    -1 (no limit), and an id that is not in the local cache: one clear line, no download."""
    transformers = pytest.importorskip("transformers")
    config = transformers.XLNetConfig(d_model=32, n_layer=1, n_head=2, d_inner=64, vocab_size=100,
                                      architectures=["XLNetModel"])
    assert config.max_position_embeddings == -1
    config.save_pretrained(tmp_path / "xlnet")
    code, out, err = run(capsys, "estimate", "--hf-config", str(tmp_path / "xlnet"), "--seq", "16", "--json", "-")
    assert code == 0, err
    assert json.loads(out)["totals"]["parameters"] > 0
    code, _, err = run(capsys, "estimate", "--hf-config", str(tmp_path / "xlnet" / "config.json"), "--seq", "16")
    assert code == 0, err
    code, _, err = run(capsys, "estimate", "--hf-config", "no-such-org/no-such-model-xyz")
    assert code == 2 and "local Hugging Face cache" in " ".join(err.split()) and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "estimate", "--hf-config", str(tmp_path / "empty"))
    assert code == 2 and "has no config.json" in " ".join(err.split())


def test_a_model_file_may_return_keyword_inputs(capsys, tmp_path):
    path = tmp_path / "kw.py"
    path.write_text(
        "import torch\n"
        "from torch import nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.embed, self.proj = nn.Embedding(100, 16), nn.Linear(16, 4)\n\n"
        "    def forward(self, input_ids, scale=None):\n"
        "        return self.proj(self.embed(input_ids) * scale)\n\n"
        "def make(batch=2):\n"
        "    return Net(), {'input_ids': torch.zeros(batch, 8, dtype=torch.long), 'scale': torch.ones(1)}\n")
    code, out, err = run(capsys, "estimate", f"{path}:make", "--batch", "3", "--json", "-")
    assert code == 0, err
    data = json.loads(out)
    assert data["batch"] == 3 and data["totals"]["parameters"] == 100 * 16 + 16 * 4 + 4
