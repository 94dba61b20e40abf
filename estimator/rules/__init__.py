"""Cost rules, one file per op family; importing this package registers them all."""
from . import (attention, conv, elementwise, embedding, fft, loss, matmul, memory, norm, optimizer, rnn,  # noqa: F401
               pooling, reduction, softmax)
