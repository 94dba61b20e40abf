"""Data movement (no FLOPs, bytes only) and free ops (views and metadata: no traffic).

Copies, concatenations, gathers and scatters read their inputs and write their outputs.
Factories (zeros, ones, full, arange) only write. Views share storage and move nothing.
"""
from __future__ import annotations

from ..costs import Cost, cost_rule, read_write


@cost_rule("cat", "stack", "clone", "_to_copy", "copy", "copy_", "_copy_from", "contiguous", "lift_fresh_copy",
           "index", "_unsafe_index", "index_select", "gather", "take", "index_put", "index_put_", "_index_put_impl_",
           "masked_select", "masked_scatter", "masked_scatter_", "slice_scatter", "select_scatter",
           "diagonal_scatter", "as_strided_scatter", "slice_backward", "select_backward", "index_select_backward",
           "constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "replication_pad2d", "repeat",
           "repeat_interleave", "roll", "flip", "tril", "triu", "tril_", "triu_", "upsample_nearest1d",
           "upsample_nearest2d", "upsample_nearest3d", "upsample_nearest2d_backward", "_unsafe_index_put",
           "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "im2col", "col2im", "_pdist_forward",
           "nonzero", "unique_dim", "_unique2", "bucketize", "searchsorted", "one_hot", "_reshape_copy",
           "narrow_copy", "unfold_copy", "_pad_circular", "trace", "masked_scatter_backward",
           "upsample_nearest1d_backward", "upsample_nearest3d_backward", "_upsample_nearest_exact1d",
           "_upsample_nearest_exact2d", "_upsample_nearest_exact3d", "_upsample_nearest_exact1d_backward",
           "_upsample_nearest_exact2d_backward", "_upsample_nearest_exact3d_backward", "reflection_pad3d",
           "reflection_pad1d_backward", "reflection_pad2d_backward", "reflection_pad3d_backward",
           "replication_pad1d", "replication_pad3d", "replication_pad1d_backward", "replication_pad2d_backward",
           "replication_pad3d_backward", "_unsafe_masked_index", "_unsafe_masked_index_put_accumulate",
           "pad_sequence", op_class="memory")
def data_movement(node, nbytes):
    return Cost(0, *read_write(node, nbytes), "memory")


@cost_rule("scatter", "scatter_", "scatter_add", "scatter_add_", "scatter_reduce", "scatter_reduce_",
           "index_add", "index_add_", "index_copy", "index_copy_", "index_fill", "index_fill_",
           "_index_put_impl", op_class="memory")
def scatter(node, nbytes):
    # scatter(self, dim, index, src): src elements are combined into a copy of self; an add
    # (or reduce) per source element where there is one
    source = node.inputs[-1].numel if len(node.inputs) > 2 else 0
    return Cost(source if "add" in node.op.__name__ or "reduce" in node.op.__name__ else 0,
                *read_write(node, nbytes), "memory")


@cost_rule("zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "fill", "fill_", "zero_",
           "arange", "linspace", "scalar_tensor", "new_zeros", "new_ones", "new_full", "rand", "randn",
           "rand_like", "randn_like", "randint", "randint_like", "normal_", "uniform_", "bernoulli_",
           "bernoulli", "eye", "tensor", "logspace", "randperm", "normal", "uniform", "exponential",
           "exponential_", "random", "random_", op_class="memory")
def factory(node, nbytes):
    return Cost(0, 0, sum(nbytes(t) for t in node.outputs), "memory")


@cost_rule("view", "_unsafe_view", "reshape", "_reshape_alias", "t", "transpose", "transpose_", "permute",
           "expand", "expand_as", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "select", "slice", "narrow",
           "detach", "detach_", "alias", "as_strided", "as_strided_", "unbind", "split", "split_with_sizes",
           "unsafe_split", "unsafe_split_with_sizes", "unsafe_chunk",
           "chunk", "tensor_split", "unfold", "diagonal", "view_as", "view_as_real", "view_as_complex",
           "flatten", "unflatten", "movedim", "swapaxes", "numpy_T", "lift_fresh", "lift", "empty",
           "empty_like", "empty_strided", "new_empty", "new_empty_strided", "_fused_sdp_choice",
           "_local_scalar_dense", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "is_same_size",
           "resize_", "set_", "_assert_async", "_assert_tensor_metadata", "_functional_assert_async",
           "record_stream", "_resize_output_", "real", "imag", "conj", "_conj", "_neg_view", "resolve_conj",
           "resolve_neg", "_has_compatible_shallow_copy_type", "is_nonzero", "item", "_nested_tensor_size",
           "split_copy", "_assert_scalar", "sym_constrain_range_for_size", "dim", "size", "stride",
           op_class="free")
def free(node, nbytes):
    return Cost(op_class="free")


@cost_rule("unfold_backward", op_class="memory")
def unfold_backward(node, nbytes):
    # Tensor.unfold's gradient: each window's gradient added back where the window was read,
    # one add per gradient element (overlapping windows sum)
    return Cost(node.inputs[0].numel, *read_write(node, nbytes), "memory")
