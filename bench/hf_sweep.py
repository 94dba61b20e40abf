"""A sweep beyond the corpus: one class per model type from transformers' auto mappings (causal
LM, masked LM, seq2seq, image/audio/video classification, CTC, segmentation, detection, depth,
base models), each through tests/hf_corpus.check (small config, train + inference capture,
FLOPs against FlopCounterMode's formulas), with a time limit per class. One JSON line per class.

    python bench/hf_sweep.py [START STOP]     # a slice of the list, to split the sweep over runs
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hf_corpus import FAMILY, check  # noqa: E402

MAPPINGS = ("CAUSAL_LM", "MASKED_LM", "SEQ_TO_SEQ_CAUSAL_LM", "IMAGE_CLASSIFICATION", "CTC", "AUDIO_CLASSIFICATION",
            "VIDEO_CLASSIFICATION", "SEMANTIC_SEGMENTATION", "OBJECT_DETECTION", "SPEECH_SEQ_2_SEQ",
            "DEPTH_ESTIMATION")
LIMIT_S = 120


def classes() -> list[str]:
    """One transformers class per model type, not already in the corpus, in mapping order."""
    import transformers
    from transformers.models.auto import modeling_auto

    tables = [getattr(modeling_auto, f"MODEL_FOR_{m}_MAPPING_NAMES") for m in MAPPINGS]
    tables.append(modeling_auto.MODEL_MAPPING_NAMES)
    seen, found = set(), []
    for table in tables:
        for model_type, name in table.items():
            name = name if isinstance(name, str) else name[0]
            if model_type not in seen and name not in FAMILY and hasattr(transformers, name):
                seen.add(model_type)
                found.append(name)
    return found


def _too_long(*_):
    raise TimeoutError(f"over {LIMIT_S} s")


def main(start: int, stop: int | None) -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    signal.signal(signal.SIGALRM, _too_long)
    for name in classes()[start:stop]:
        signal.alarm(LIMIT_S)
        try:
            r = check(name)
            row = {"name": name, "ok": r.ok, "stage": r.stage, "flops_error": round(r.flops_error, 5),
                   "unsupported": dict(r.unsupported), "error": r.error[:200], "seconds": round(r.seconds, 1)}
        except TimeoutError as e:
            row = {"name": name, "ok": False, "stage": "timeout", "error": str(e)}
        finally:
            signal.alarm(0)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0, int(sys.argv[2]) if len(sys.argv) > 2 else None)
