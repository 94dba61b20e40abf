"""The Hugging Face corpus (tests/hf_corpus.py): every architecture built small from its config
class, a training and an inference step captured, FLOPs against FlopCounterMode's formulas.

Prints one row per architecture (status, where it failed, FLOP difference, seconds) and a
summary per family; the slow test (`pytest -m slow tests/test_hf_corpus.py`) asserts on the
same results.

    python bench/hf_corpus.py [NAME ...]
"""
from __future__ import annotations

import logging
import sys
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hf_corpus import CORPUS, TIMM, check, timm_imports  # noqa: E402


def main(names: list[str]) -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)  # transformers' notes on configs; the table says what matters
    if not names and not timm_imports():
        print("timm does not import here: its models are left out")
    names = names or [n for family in CORPUS.values() for n in family] + (TIMM if timm_imports() else [])
    print(f"{'family':16s} {'architecture':40s} {'result':8s} {'FLOPs vs ref':>12s} {'seconds':>8s}  detail")
    results = []
    for name in names:
        r = check(name)
        results.append(r)
        detail = r.error or (", ".join(f"{op} x{n}" for op, n in r.unsupported.items()) if r.unsupported else "")
        status = "ok" if r.ok else r.stage or "failed"
        flops = f"{100 * (r.ours_flops - r.reference_flops) / r.reference_flops:+.3f}%" if r.reference_flops else "-"
        print(f"{r.family:16s} {name:40s} {status:8s} {flops:>12s} {r.seconds:8.1f}  {detail[:150]}", flush=True)
    passed = Counter(r.family for r in results if r.ok)
    total = Counter(r.family for r in results)
    print("\nper family: " + ", ".join(f"{f} {passed[f]}/{n}" for f, n in total.items()))
    within = sum(r.ok and r.flops_error <= 0.01 for r in results)
    worst = max((r.flops_error for r in results if r.ok), default=0.0)
    print(f"all: {sum(passed.values())}/{len(results)} run training and inference with every op costed "
          f"({100 * sum(passed.values()) / len(results):.1f}%); {within} within 1% of FlopCounterMode "
          f"(worst {100 * worst:.3f}%); {sum(r.seconds for r in results):.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
