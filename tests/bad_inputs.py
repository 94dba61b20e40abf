"""Bad and edge inputs for the command line, each with what must hold (tests/test_bad_inputs.py).

A case is a command line (run in a folder of user files made by `make_user_files`) that must
fail cleanly: a non-zero exit, one or a few lines on stderr naming the problem, no traceback,
no hang, and no user file changed. The cases are built by crossing each bad value with every
command that takes it (a bad model in `estimate`, `estimate --train`, `required` and `plot`),
so a fix in one command that another lacks shows up.

Example:
    >>> cases = all_cases()
    >>> cases[0].argv
    ['estimate', '']
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    env: dict = field(default_factory=dict)  # extra environment (subprocess runs only)


USER_FILES = {
    # model files a user might write, each broken in its own way
    "raises_at_import.py": "raise ValueError('no GPU configured')\n",
    "exits_at_import.py": "import sys\nsys.exit(0)\n",
    "argv_at_import.py": ("import argparse\np = argparse.ArgumentParser()\np.add_argument('--lr', type=float, "
                          "required=True)\nargs = p.parse_args()\n"),
    "syntax_error.py": "def make(:\n    pass\n",
    "factories.py": (
        "import sys, torch\nfrom torch import nn\n"
        "def wrong_type():\n    return 42\n"
        "def raises():\n    raise RuntimeError('weights not found')\n"
        "def exits():\n    sys.exit(0)\n"
        "def not_a_tuple():\n    return nn.Linear(4, 4)\n"
        "def int_into_linear():\n    return nn.Linear(8, 4), (torch.randint(0, 5, (2, 8)),)\n"
        "def wrong_shape():\n    return nn.Linear(8, 4), (torch.randn(2, 9),)\n"
        "def no_tensor():\n    return nn.Linear(8, 4), ('text',)\n"
        "def reads_value():\n    class M(nn.Module):\n        def forward(self, x):\n"
        "            return x.new_zeros(int(x.sum()))\n    return M(), (torch.randn(3),)\n"
        "def no_batch():\n    return nn.Linear(8, 4), (torch.randn(2, 8),)\n"),
    # hardware files
    "not_utf8.yaml": b"name: \xff\xfe chip\n",
    "syntax.yaml": "id: x\npeaks: [1, 2\n",
    "list.yaml": "- 1\n- 2\n",
    "empty.yaml": "",
    "bomb.yaml": ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                  "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                  "id: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"),
    # Hugging Face configs
    "hf_array/config.json": "[1, 2, 3]",
    "hf_string/config.json": '"bert"',
    "hf_invalid/config.json": '{"model_type": "bert", ',
    "hf_unknown_type/config.json": '{"model_type": "not-a-model"}',
    "hf_no_type/config.json": '{"hidden_size": 8}',
    "hf_bad_field/config.json": '{"model_type": "bert", "hidden_size": "big"}',
    "hf_heads/config.json": '{"model_type": "bert", "hidden_size": 100, "num_attention_heads": 3}',
    "hf_arch_number/config.json": '{"model_type": "bert", "architectures": [7]}',
    "hf_no_config/readme.txt": "no config here",
    "hf_ok/config.json": json.dumps({"model_type": "bert", "num_hidden_layers": 1, "hidden_size": 32,
                                     "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 100,
                                     "architectures": ["BertModel"]}),
    # --inputs files
    "inputs_invalid.json": "{",
    "inputs_list.json": "[1, 2]",
    "inputs_shape.json": '{"input_ids": [0, 4]}',
    "inputs_dtype.json": '{"input_ids": {"shape": [1, 4], "dtype": "complex"}}',
    # the user's own files, which no case may change
    "mine/report.md": "# my notes\n",
    "mine/report.json": "{}\n",
    "results.json": '{"mine": true}\n',
    "a_file": "not a folder\n",
}


def make_user_files(folder) -> None:
    """Write USER_FILES under `folder` (a pathlib.Path)."""
    for name, content in USER_FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


BAD_MODELS = ["", " ", "resnet5", "RESNET50", "nope.py:make", "nope.py", ":make", "factories.py:", "factories.py:nope",
              "os:path", "no_such_package_xyz:make", "raises_at_import.py:make", "exits_at_import.py:make",
              "argv_at_import.py:make", "syntax_error.py:make", "factories.py:wrong_type", "factories.py:raises",
              "factories.py:exits", "factories.py:not_a_tuple", "factories.py:int_into_linear",
              "factories.py:wrong_shape", "factories.py:no_tensor", "factories.py:reads_value",
              "torchvision:resnet50", "timm:resnet50", "x" * 300]
BAD_HARDWARE = ["", ",", "h10", "a100", "@fp16", "a100-80gb-sxm@", "a100-80gb-sxm@fp64x", "x" * 5000, "mine",
                "missing.yaml", "not_utf8.yaml", "syntax.yaml", "list.yaml", "empty.yaml", "bomb.yaml",
                "a_file/chip.yaml", "../../etc/passwd"]
BAD_SIZES = [("--batch", "0"), ("--batch", "-1"), ("--batch", "abc"), ("--batch", "1e3"),
             ("--batch", "100000000000000000000"), ("--seq", "0"), ("--seq", "-4"), ("--image", "0"),
             ("--image", "-224"), ("--image", "99999999999")]
BAD_JSON_PATHS = ["mine", "missing_folder/out.json", "a_file/out.json", "y" * 300 + ".json", "mine/" + "z" * 260]
BAD_HF = ["hf_array", "hf_string", "hf_invalid", "hf_unknown_type", "hf_no_type", "hf_bad_field", "hf_heads",
          "hf_arch_number", "hf_no_config", "hf_missing", "hf_array/config.json", "not/a/model-id"]


# cluster layouts that cannot run: (name, extra argv) for `estimate gpt2 --seq 64 --train`
BAD_LAYOUTS = [
    ("product-not-gpus", ["--gpus", "8", "--parallel", "tp=2,pp=2,dp=3"]),
    ("tp-pp-not-dividing-gpus", ["--gpus", "8", "--parallel", "tp=3"]),
    ("tp-not-dividing-heads", ["--gpus", "8", "--parallel", "tp=8"]),  # gpt2 has 12 heads
    ("pp-not-dividing-layers", ["--gpus", "5", "--parallel", "pp=5"]),
    ("ep-without-experts", ["--gpus", "8", "--parallel", "ep=2,dp=8"]),
    ("ep-not-dividing-dp", ["--gpus", "8", "--parallel", "tp=2,ep=3"]),
    ("sp-without-tp", ["--gpus", "8", "--parallel", "sp"]),
    ("two-data-modes", ["--gpus", "8", "--parallel", "fsdp,zero2"]),
    ("unknown-dimension", ["--gpus", "8", "--parallel", "xp=2"]),
    ("unknown-word", ["--gpus", "8", "--parallel", "megatron"]),
    ("dimension-twice", ["--gpus", "8", "--parallel", "tp=2,tp=2"]),
    ("dimension-zero", ["--gpus", "8", "--parallel", "tp=0"]),
    ("dimension-text", ["--gpus", "8", "--parallel", "tp=two"]),
    ("empty-part", ["--gpus", "8", "--parallel", "tp=2,,dp=4"]),
    ("empty-layout", ["--gpus", "8", "--parallel", ""]),
    ("gpus-zero", ["--gpus", "0"]),
    ("gpus-negative", ["--gpus", "-8"]),
    ("gpus-not-whole-nodes", ["--gpus", "12", "--hardware", "dgx-h100"]),
    ("gpus-per-node-zero", ["--gpus", "8", "--gpus-per-node", "0"]),
    ("search-with-parallel", ["--gpus", "8", "--search", "--parallel", "ddp"]),
    ("price-without-tokens", ["--gpus", "8", "--price-per-gpu-hour", "2"]),
    ("price-negative", ["--gpus", "8", "--train-tokens", "1e9", "--price-per-gpu-hour", "-2"]),
    ("train-tokens-zero", ["--gpus", "8", "--train-tokens", "0"]),
    ("train-tokens-nan", ["--gpus", "8", "--train-tokens", "nan"]),
    ("global-batch-not-multiple", ["--gpus", "8", "--global-batch", "12"]),
    ("global-batch-zero", ["--gpus", "8", "--global-batch", "0"]),
    ("system-unknown", ["--gpus", "8", "--system", "dgx-h10"]),
    ("system-file-missing", ["--gpus", "8", "--system", "missing_folder/system.yaml"]),
    ("system-not-yaml", ["--gpus", "8", "--system", "syntax.yaml"]),
    ("system-chip-differs", ["--gpus", "8", "--system", "dgx-h100", "--hardware", "a100-80gb-sxm"]),
    ("chip-without-system", ["--gpus", "8", "--hardware", "m2-pro"]),
    ("several-chips", ["--gpus", "8", "--hardware", "h100-sxm,a100-80gb-sxm"]),
    ("max-batch-with-gpus", ["--gpus", "8", "--max-batch"]),
]


# serving requests that cannot be served: (name, argv after `serve`)
BAD_SERVING = [
    ("encoder-only", ["bert_base"]),
    ("image-model", ["resnet18"]),
    ("unknown-decoder", ["lama3_8b"]),
    ("no-model", []),
    ("model-and-config", ["gpt2", "--hf-config", "hf_ok"]),
    ("encoder-config", ["--hf-config", "hf_ok"]),
    ("prompt-past-positions", ["gpt2", "--prompt", "1000", "--generate", "100"]),
    ("prompt-zero", ["gpt2", "--prompt", "0"]),
    ("generate-negative", ["gpt2", "--generate", "-5"]),
    ("batch-zero", ["gpt2", "--batch", "0"]),
    ("batch-empty-item", ["gpt2", "--batch", "1,,8"]),
    ("batch-does-not-fit", ["gpt2", "--hardware", "l4", "--prompt", "512", "--generate", "64", "--batch", "100000"]),
    ("weights-unknown", ["gpt2", "--weights", "int3"]),
    ("kv-unknown", ["gpt2", "--kv-cache", "fp4"]),
    ("fp8-on-a100", ["gpt2", "--hardware", "a100-80gb-sxm", "--weights", "fp8"]),
    ("fp8-cache-on-v100", ["gpt2", "--hardware", "v100-sxm2", "--kv-cache", "fp8"]),
    ("precision-missing", ["gpt2", "--hardware", "v100-sxm2", "--precision", "bf16"]),
    ("chip-unknown", ["gpt2", "--hardware", "h10"]),
    ("gpus-zero", ["gpt2", "--gpus", "0"]),
    ("gpus-not-dividing-heads", ["gpt2", "--gpus", "5", "--prompt", "128", "--generate", "8", "--batch", "1"]),
    ("system-without-gpus", ["gpt2", "--system", "dgx-h100"]),
    ("plot-not-png", ["gpt2", "--plot", "serve.txt"]),
    ("plot-missing-folder", ["gpt2", "--plot", "missing_folder/serve.png"]),
    ("json-is-folder", ["gpt2", "--json", "mine"]),
    ("top-negative", ["gpt2", "--top", "-1"]),
    ("hf-class-alone", ["gpt2", "--hf-class", "LlamaForCausalLM"]),
    ("execution-unknown", ["gpt2", "--execution", "turbo"]),
    ("graphs-on-cpu", ["gpt2", "--hardware", "xeon-8480", "--execution", "cuda-graphs"]),
    ("measure-on-a-gpu", ["gpt2", "--measure"]),
    ("measure-quantised", ["gpt2", "--measure", "--hardware", "local", "--precision", "fp32", "--weights", "int4"]),
]


def all_cases() -> list[Case]:
    """Every case (see module doc); names are unique."""
    cases: list[Case] = []

    def add(name: str, *argv: str, env: dict | None = None):
        cases.append(Case(name, list(argv), env or {}))

    for i, model in enumerate(BAD_MODELS):
        add(f"estimate-model-{i}", "estimate", model)
        add(f"estimate-train-model-{i}", "estimate", model, "--train")
        add(f"required-model-{i}", "required", model, "--throughput", "100")
        add(f"plot-model-{i}", "plot", "roofline", model, "--out", "new.png")
    for i, chip in enumerate(BAD_HARDWARE):
        add(f"estimate-hardware-{i}", "estimate", "resnet18", "--hardware", chip)
        add(f"show-hardware-{i}", "hardware", "show", chip)
        add(f"required-hardware-{i}", "required", "--macs", "4e9", "--throughput", "100", "--hardware", chip)
        add(f"plot-hardware-{i}", "plot", "roofline", "resnet18", "--hardware", chip, "--out", "new.png")
    for option, value in BAD_SIZES:
        add(f"estimate{option}={value}", "estimate", "resnet18", option, value)
        add(f"required{option}={value}", "required", "resnet18", "--throughput", "10", option, value)
        add(f"plot{option}={value}", "plot", "roofline", "resnet18", option, value, "--out", "new.png")
    for i, path in enumerate(BAD_JSON_PATHS):
        add(f"estimate-json-{i}", "estimate", "resnet18", "--json", path)
        add(f"required-json-{i}", "required", "--macs", "4e9", "--throughput", "100", "--json", path)
        add(f"measure-json-{i}", "measure", "--model", "resnet18", "--batch", "1", "--json", path)
        add(f"compare-json-{i}", "compare", "resnet18", "--json", path)
    for i, path in enumerate(["mine", "new.txt", "missing_folder/x.png", "a_file/x.png", "q" * 300 + ".png"]):
        add(f"plot-out-{i}", "plot", "chips", "--out", path)
    for i, path in enumerate(BAD_JSON_PATHS + ["hf_ok/config.json", "new.txt"]):  # hf_ok/config.json exists
        add(f"schema-out-{i}", "hardware", "schema", "--out", path)
    for i, argv in enumerate((["--kind", "chip"], ["--kind", ""], ["--force"], ["--kind", "system", "extra"])):
        add(f"schema-args-{i}", "hardware", "schema", *argv)
    for i, hf in enumerate(BAD_HF):
        add(f"hf-config-{i}", "estimate", "--hf-config", hf)
        add(f"hf-config-train-{i}", "estimate", "--hf-config", hf, "--train")
    for i, inputs in enumerate(["inputs_invalid.json", "inputs_list.json", "inputs_shape.json", "inputs_dtype.json",
                                "missing_inputs.json"]):
        add(f"hf-inputs-{i}", "estimate", "--hf-config", "hf_ok", "--inputs", inputs)
    # options that would be ignored, and values outside their range
    add("hf-class-alone", "estimate", "resnet18", "--hf-class", "BertModel")
    add("hf-class-unknown", "estimate", "--hf-config", "hf_ok", "--hf-class", "NoSuchModel")
    add("inputs-alone", "estimate", "resnet18", "--inputs", "inputs_shape.json")
    add("optimizer-without-train", "estimate", "resnet18", "--optimizer", "sgd")
    add("optimizer-unknown", "estimate", "resnet18", "--train", "--optimizer", "lion")
    add("top-negative", "estimate", "resnet18", "--top", "-5")
    add("depth-zero", "estimate", "resnet18", "--depth", "0")
    add("accumulate-zero", "estimate", "resnet18", "--train", "--accumulate", "0")
    add("accumulate-without-train", "estimate", "resnet18", "--accumulate", "4")
    add("recompute-without-train", "estimate", "resnet18", "--recompute")
    add("precision-unknown", "estimate", "resnet18", "--precision", "fp64")
    add("precision-missing-on-chip", "estimate", "resnet18", "--hardware", "v100-sxm2", "--precision", "fp8")
    add("execution-unknown", "estimate", "resnet18", "--execution", "turbo")
    add("cuda-graphs-on-cpu", "estimate", "resnet18", "--hardware", "xeon-8480", "--execution", "cuda-graphs")
    add("moe-skew-below-one", "estimate", "--hf-config", "hf_ok", "--moe-skew", "0.5")
    add("model-and-hf-config", "estimate", "resnet18", "--hf-config", "hf_ok")
    add("neither-model-nor-config", "estimate")
    add("image-for-token-model", "estimate", "gpt2", "--image", "224")
    add("seq-for-image-model", "estimate", "resnet18", "--seq", "128")
    add("image-too-small", "estimate", "vit_b_16", "--image", "8")
    add("seq-too-long", "estimate", "gpt2", "--seq", "100000")
    add("by-unknown", "estimate", "resnet18", "--by", "colour")
    for i, throughput in enumerate(["0", "-5", "1e308", "nan", "inf", "abc"]):
        add(f"required-throughput-{i}", "required", "--macs", "4e9", "--throughput", throughput)
    for i, macs in enumerate(["0", "-1", "nan", "1e400"]):
        add(f"required-macs-{i}", "required", "--macs", macs, "--throughput", "100")
    add("required-both", "required", "resnet18", "--macs", "4e9", "--throughput", "100")
    add("required-neither", "required", "--throughput", "100")
    add("measure-model-comma", "measure", "--model", ",")
    add("measure-model-unknown", "measure", "--model", "resnet5")
    add("measure-batch-zero", "measure", "--model", "resnet18", "--batch", "0")
    add("measure-batch-list", "measure", "--model", "resnet18", "--batch", "1,,2")
    add("compare-unknown", "compare", "resnet5")
    add("compare-file-model", "compare", "factories.py:no_batch")
    add("plot-kind-unknown", "plot", "bars", "--out", "new.png")
    add("plot-chips-with-model", "plot", "chips", "resnet18", "--out", "new.png")
    add("plot-breakdown-no-model", "plot", "breakdown", "--out", "new.png")
    add("report-out-is-file", "report", "--models", "resnet18", "--hardware", "a100-80gb-sxm", "--batch", "1",
        "--out", "a_file")
    add("report-over-users-files", "report", "--models", "resnet18", "--hardware", "a100-80gb-sxm", "--batch", "1",
        "--out", "mine")
    add("report-models-empty", "report", "--models", ",", "--out", "new_report")
    add("report-batch-bad", "report", "--models", "resnet18", "--batch", "0", "--out", "new_report")
    add("calibrate-out-folder", "calibrate", "--quick", "--out", "mine")
    add("calibrate-out-under-file", "calibrate", "--quick", "--out", "a_file/local.yaml")
    add("calibrate-out-missing-folder", "calibrate", "--quick", "--out", "missing_folder/local.yaml")
    for name, extra in BAD_LAYOUTS:
        add(f"cluster-{name}", "estimate", "gpt2", "--seq", "64", "--train", *extra)
    add("cluster-without-train", "estimate", "gpt2", "--seq", "64", "--gpus", "8")
    add("measure-nproc-one", "measure", "--model", "resnet18", "--train", "--nproc", "1")
    add("measure-nproc-without-train", "measure", "--model", "resnet18", "--nproc", "2")
    add("measure-parallel-without-nproc", "measure", "--model", "resnet18", "--parallel", "fsdp")
    add("calibrate-nproc-without-network", "calibrate", "--nproc", "4")
    add("calibrate-network-nproc-one", "calibrate", "--network", "--nproc", "1")
    for name, extra in BAD_SERVING:
        add(f"serve-{name}", "serve", *extra)
    add("models-unknown-flag", "models", "--colour")
    add("cache-without-action", "cache")
    add("cache-unknown-action", "cache", "empty")
    add("cache-clear-extra-argument", "cache", "clear", "everything")
    add("estimate-no-cache-unknown-model", "estimate", "resnet5", "--no-cache")
    add("models-no-cache-value", "models", "--no-cache=yes")
    add("unknown-command", "estimat", "resnet18")
    add("no-command")
    return cases
