"""Captures leave torch._dynamo unimported, and leave torch as they found it: the same step as a
capture with Dynamo loaded, torch.compile working afterwards with the config FakeTensorMode read,
the import hook and the stand-in gone even when the model fails. Each check runs in a fresh
process (pytest's may have imported Dynamo already, where the block changes nothing)."""
import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import builtins, json, sys
import torch
import roofline_zoo
from estimator import capture, evaluate, load_hardware
from estimator.dynamo_free import DISABLE_CACHE, DYNAMO_CONFIG, dynamo_unimported
from torch._subclasses.fake_tensor import FakeTensorMode

out = {}
import_hook = builtins.__import__
dispatch = FakeTensorMode.__dict__["__torch_dispatch__"].__wrapped__
chip = load_hardware("a100-80gb-sxm")

def summary(step):
    return [len(step.nodes), [(n.op, str(n.target)) for n in step.graph.nodes],
            evaluate(step, chip, "amp-bf16").totals()]

def left_behind():
    return {"dynamo": "torch._dynamo" in sys.modules, "attribute": "_dynamo" in torch.__dict__,
            "hook": builtins.__import__ is not import_hook, "kept": hasattr(dispatch, DISABLE_CACHE)}

steps = {}
model, inputs = roofline_zoo.get("resnet18").build(batch=2, image=64)  # its initialisers import no Dynamo
steps["resnet18"] = summary(capture(model, inputs, "train", optimizer="adamw"))
out["after_capture"] = left_behind()
with dynamo_unimported():  # as the command line runs: gpt2's normal_ on meta would import Dynamo
    model, inputs = roofline_zoo.get("gpt2").build(batch=2, seq=32)
    steps["gpt2"] = summary(capture(model, inputs, "train", optimizer="adamw"))
out["after_block"] = left_behind()

class Broken(torch.nn.Module):
    def forward(self, x):
        raise ValueError("the model's own error")
try:
    capture(Broken(), (torch.randn(2, 3),), "inference")
except Exception as e:
    out["broken"] = type(e).__name__
out["after_failure"] = left_behind()

config = sys.modules[DYNAMO_CONFIG]
import torch._dynamo
out["same_config"] = torch._dynamo.config is config and sys.modules[DYNAMO_CONFIG] is config
compiled = torch.compile(lambda x: torch.sin(x) * 2, backend="eager")
x = torch.randn(5)
out["compiled"] = bool(torch.equal(compiled(x), torch.sin(x) * 2))
out["kept_after_compile"] = getattr(dispatch, DISABLE_CACHE, None) is dispatch
for name, sizes in (("resnet18", {"image": 64}), ("gpt2", {"seq": 32})):
    model, inputs = roofline_zoo.get(name).build(batch=2, **sizes)
    out["same_step_" + name] = summary(capture(model, inputs, "train", optimizer="adamw")) == steps[name]
print(json.dumps(out))
"""

STAND_IN = r"""
import builtins, json, sys, torch
from estimator.dynamo_free import dynamo_unimported
plain_import = builtins.__import__
with dynamo_unimported():
    before = "torch._dynamo" in sys.modules
    compiling = torch._dynamo.is_compiling()  # a name the stand-in does not hold: the real package
    real = torch._dynamo is sys.modules.get("torch._dynamo")
    import json as again  # any import after that puts the import hook away
    hooked = builtins.__import__ is not plain_import
with dynamo_unimported():  # Dynamo loaded now: the block changes nothing
    unchanged = torch._dynamo is sys.modules["torch._dynamo"]
print(json.dumps({"before": before, "compiling": compiling, "real": real, "hooked": hooked, "unchanged": unchanged}))
"""

DECORATOR = r"""
import json, sys, torch
from estimator.dynamo_free import dynamo_unimported
with dynamo_unimported():
    @torch._dynamo.disable  # a decorator applied inside the block (a module imported during a capture)
    def inner(x):
        return x + 1
    loaded = "torch._dynamo" in sys.modules
print(json.dumps({"loaded": loaded, "disabled": getattr(inner, "_torchdynamo_disable", False),
                  "value": inner(1)}))
"""


@pytest.fixture(scope="module")
def fresh_process():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_captures_import_no_dynamo_and_leave_nothing_behind(fresh_process):
    nothing = {"dynamo": False, "attribute": False, "hook": False, "kept": False}
    assert fresh_process["after_capture"] == nothing
    assert fresh_process["after_block"] == nothing
    assert fresh_process["broken"] == "CaptureError"
    assert fresh_process["after_failure"] == nothing


def test_dynamo_imported_later_keeps_the_config_and_compiles(fresh_process):
    assert fresh_process["same_config"]
    assert fresh_process["compiled"]
    assert not fresh_process["kept_after_compile"]  # torch's own disable(fn) took the place


@pytest.mark.parametrize("name", ["resnet18", "gpt2"])
def test_same_step_with_dynamo_loaded(fresh_process, name):
    assert fresh_process["same_step_" + name]


def test_other_names_import_the_real_package():
    proc = subprocess.run([sys.executable, "-c", STAND_IN], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == {"before": False, "compiling": False, "real": True, "hooked": False,
                                       "unchanged": True}


def test_decorators_other_than_torchs_wrapper_get_dynamos_disable():
    proc = subprocess.run([sys.executable, "-c", DECORATOR], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == {"loaded": True, "disabled": True, "value": 2}


def test_command_line_estimate_imports_no_dynamo(tmp_path):
    """A decoder's build (normal_ on meta) and training capture under the `roofline` entry point."""
    entry = ("import sys, roofline_cli; sys.argv = ['roofline', 'estimate', 'gpt2', '--seq', '32', '--train', "
             "'--no-cache', '--json', '-']; code = roofline_cli.main(); "
             "print(code, 'torch._dynamo' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", entry], capture_output=True, text=True)
    assert proc.stderr.split()[-2:] == ["0", "False"], proc.stderr[-2000:]
    assert json.loads(proc.stdout)["totals"]["parameters"] > 100_000_000


NO_CONFIG_FILE = r"""
import json, sys, torch
import roofline_zoo
from estimator import capture
from estimator import dynamo_free
dynamo_free.os.path.isfile = lambda path: False  # a torch that keeps its Dynamo config elsewhere
model, inputs = roofline_zoo.get("resnet18").build(batch=2, image=64)
step = capture(model, inputs, "train")
print(json.dumps({"nodes": len(step.nodes), "loaded": "torch._dynamo" in sys.modules,
                  "attribute": type(torch._dynamo).__name__}))
"""


def test_without_a_config_file_the_block_leaves_dynamo_to_torch():
    proc = subprocess.run([sys.executable, "-c", NO_CONFIG_FILE], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["nodes"] > 100 and result["loaded"] and result["attribute"] == "module"
