"""Host cost of ops inside real models vs the calibrated per-op probes, on this machine.

`roofline calibrate` measures host costs as hot loops of one tiny op (estimator.host_probes).
Inside a model, every op also pays for code and data that are cold in the CPU's caches, for
argument handling of real signatures and for the model's own Python. This bench runs models
made of tiny layers (work per op negligible next to dispatch) in eager inference on the CPU,
counts their kernels, views and module calls from our capture, and prints the measured time
per forward beside what the `local` host profile predicts for that many ops (op_us per kernel,
view_us per view, module_call_us per module call), and their ratio. One thread; the 20th
percentile of 15 rounds of 20 forwards.

On a CPU the "kernel" of a tiny op still runs on the same core (a few microseconds), so the
ratio is an upper bound on what the same host adds per kernel in eager GPU runs.

    python bench/host_in_situ.py        (needs `roofline calibrate` first)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from estimator.capture import capture  # noqa: E402
from estimator.execution import modules_entered  # noqa: E402
from estimator.hardware import load_hardware  # noqa: E402
from estimator.precision import PRECISIONS  # noqa: E402
from estimator.roofline import step_costs  # noqa: E402


class ConvBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x))) + x


def models() -> dict:
    out = {"cnn (40 conv-bn-relu-add)": (nn.Sequential(*[ConvBlock() for _ in range(40)]), (torch.randn(1, 4, 4, 4),)),
           "mlp (40 linear-gelu-ln)": (nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.LayerNorm(8))
                                                     for _ in range(40)]), (torch.randn(1, 8),))}
    try:
        import transformers
        cfg = transformers.LlamaConfig(hidden_size=16, num_hidden_layers=8, num_attention_heads=2, num_key_value_heads=1,
                                       intermediate_size=32, vocab_size=64)
        out["HF Llama (8 layers, 1 token)"] = (transformers.LlamaForCausalLM(cfg), (torch.zeros(1, 1, dtype=torch.long),))
    except ImportError:
        pass
    return out


def counts(model, inputs) -> tuple[int, int, int]:
    """(kernels, views, module calls) of one inference forward, from the capture."""
    step = capture(model, inputs, mode="inference")
    costs = step_costs(step, PRECISIONS["fp32"])
    return (sum(c.op_class != "free" for c in costs), sum(c.op_class == "free" for c in costs),
            sum(modules_entered(step)))


def seconds_per_call(fn, inner: int = 20, rounds: int = 15) -> float:
    for _ in range(5):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return sorted(samples)[len(samples) // 5]


def main() -> int:
    host = load_hardware("local").host
    if host is None:
        raise SystemExit("the local chip has no host profile; run `roofline calibrate` first")
    torch.set_num_threads(1)
    print(f"local host: op {host.op_s * 1e6:.2f} us, view {host.view_s * 1e6:.2f} us, "
          f"module call {host.module_call_s * 1e6:.2f} us (calibrate's hot-loop probes)")
    print(f"{'model':<30}{'kernels':>8}{'views':>7}{'modules':>8}{'measured us':>13}{'probes us':>11}{'ratio':>7}")
    for name, (model, inputs) in models().items():
        model.eval()
        kernels, views, calls = counts(model, inputs)
        with torch.no_grad():
            measured = seconds_per_call(lambda: model(*inputs))
        predicted = kernels * host.op_s + views * host.view_s + calls * host.module_call_s
        print(f"{name:<30}{kernels:>8}{views:>7}{calls:>8}{measured * 1e6:>13,.0f}{predicted * 1e6:>11,.0f}"
              f"{measured / predicted:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
