"""Fast Fourier transforms (torch.fft; FNet's token mixing). FLOPs by the convention FFT
benchmarks use (FFTW's "mflops" = 5 N log2 N / time for a complex transform of length N, and
2.5 N log2 N for a real one): per transformed dimension of length n, 5 log2 n FLOPs per complex
element (2.5 per real element for the real-input and real-output transforms); dimensions
multiply as separate passes. Bytes: inputs read and outputs written once. The backward of a
transform is a transform, costed by the same rules. Class "elementwise": on a GPU cuFFT is
bandwidth-bound at these sizes.

Example: _fft_c2c over the last dim (n = 1024) of a complex (8, 1024) tensor: 5 x 8192 x 10 FLOPs.
"""
from __future__ import annotations

import math

from ..costs import Cost, cost_rule, read_write


def _dims(node) -> list[int]:
    dims = node.args[1] if len(node.args) > 1 else []
    return [dims] if isinstance(dims, int) else list(dims)


@cost_rule("_fft_c2c", "_fft_r2c", "_fft_c2r", op_class="elementwise")
def fft(node, nbytes):
    name = node.op.overloadpacket.__name__
    full = node.outputs[0] if name == "_fft_c2r" else node.inputs[0]  # the full-length side
    per_element = 5.0 if name == "_fft_c2c" else 2.5  # complex points, or real ones
    flops = sum(per_element * full.numel * math.log2(max(2, full.shape[d])) for d in _dims(node))
    return Cost(int(flops), *read_write(node, nbytes), "elementwise")
