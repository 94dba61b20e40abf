"""Host costs with the in-situ multipliers, then ten steps that depend on them, on one GPU machine.

The host probes (estimator.host_probes, now with in_situ_forward / in_situ_backward) and
batch-1/8 steps measured in one run, so bench/gpu_rows.py can check the multipliers on steps of
the same machine (host speed differs between machines; validation/h200/README.md).

    python bench/gpu_host_check.py cuda DIR 80      # device, output folder, time budget (s)
    python bench/gpu_host_check.py cpu DIR 20       # structure check: tiny fp32 steps
"""
import sys
from pathlib import Path
sys.path.insert(0, 'bench')
import gpu_steps
from estimator.host_probes import measure_host
dev, out_dir, budget = sys.argv[1], sys.argv[2], float(sys.argv[3])
out = gpu_steps.Out(Path(out_dir), budget, 'gpu_host_check.jsonl')
out.write(gpu_steps.env_record(dev))
out.write({'kind': 'host', **measure_host(dev, plan='full' if dev == 'cuda' else 'tiny')})
for c in [('resnet50', 1, 'amp-fp16', False, None, False), ('resnet50', 1, 'fp32', False, None, False),
          ('bert_base', 1, 'amp-fp16', False, 128, False), ('bert_base', 8, 'amp-fp16', False, 128, False),
          ('gpt2', 1, 'amp-bf16', False, 128, False), ('vit_b_16', 1, 'amp-bf16', False, None, False),
          ('efficientnet_b0', 1, 'amp-fp16', False, None, False), ('resnet50', 8, 'amp-fp16', True, None, False),
          ('bert_base', 8, 'amp-fp16', True, 128, False), ('bert_large', 64, 'amp-fp16', True, 128, False)]:
    if out.left_s() < 5:
        break
    if dev == 'cpu':
        c = (c[0], 1, 'fp32', c[3], 16 if c[4] else 32, False)
    gpu_steps.measure_step(out, c, dev)
out.write({'kind': 'done'})
