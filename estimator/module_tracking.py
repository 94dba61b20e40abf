"""Which nn.Module owns the op running now, in the forward and in the backward.

Forward: global pre/post hooks keep a stack of the modules being called. Backward: as
torch.utils.module_tracker does, a module is entered when the gradient of one of its outputs
is ready (the first) and left when the gradients of its inputs are; a module whose inputs need no gradient
(the first conv, an embedding) is never left, so the owner is the most recently entered
module still active, not the deepest one.

Example:
    with ModuleOwnerTracker({id(m): (name, type(m).__name__) for name, m in model.named_modules()}) as t:
        model(x)           # inside ops, t.owner() == ("layer1.0.conv2", "Conv2d")
"""
from __future__ import annotations

import torch
from torch.autograd.graph import register_multi_grad_hook
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._pytree import tree_leaves


class ModuleOwnerTracker:
    def __init__(self, names: dict[int, tuple[str, str]], root_owner: tuple[str, str]):
        self._names = names
        self._root = root_owner
        self._active: list[tuple[str, str]] = []  # entry order; the last is the owner
        self._input_grad_fns: dict[int, list[dict]] = {}  # per module call: input id -> grad_fn
        self._grad_hooks: list = []

    def owner(self) -> tuple[str, str]:
        """(module path, module type) of the op being run; the root when no module is active."""
        return self._active[-1] if self._active else self._root

    def _name(self, mod: torch.nn.Module) -> tuple[str, str]:
        return self._names.get(id(mod)) or (type(mod).__name__, type(mod).__name__)

    def _enter(self, entry):
        # Backward hooks of a module and of its parents fire together when they share an
        # output tensor (a Sequential's last layer); keep the descendant on top.
        i = len(self._active)
        while i > 0 and _is_descendant(self._active[i - 1][0], entry[0]):
            i -= 1
        self._active.insert(i, entry)

    def _leave(self, entry):
        # remove the most recent occurrence (a module called twice is active twice)
        for i in range(len(self._active) - 1, -1, -1):
            if self._active[i] == entry:
                del self._active[i]
                return

    def _pre_hook(self, mod, args):
        entry = self._name(mod)
        self._enter(entry)
        grads = [t for t in tree_leaves(args) if isinstance(t, torch.Tensor) and t.requires_grad]
        self._input_grad_fns.setdefault(id(mod), []).append({id(t): t.grad_fn for t in grads})
        # a leaf (a parameter passed straight into a submodule, as YOLOS and DeBERTa do) cannot
        # carry a grad hook under autograd.grad; the module's other inputs mark its leaving
        grads = [t for t in grads if t.grad_fn is not None]
        if grads:
            self._grad_hooks.append(register_multi_grad_hook(grads, lambda _: self._leave(entry)))

    def _post_hook(self, mod, args, output):
        entry = self._name(mod)
        self._leave(entry)
        # an input returned untouched (nn.Identity, Dropout(p=0): same tensor, same grad_fn)
        # would enter the module in backward after its own "leave" fired and keep it active:
        # skip it. An in-place op (ReLU(inplace=True)) gives the tensor a new grad_fn: keep it.
        untouched = self._input_grad_fns[id(mod)].pop()
        grads = [t for t in tree_leaves(output) if isinstance(t, torch.Tensor) and t.requires_grad
                 and t.grad_fn is not None and not (id(t) in untouched and untouched[id(t)] is t.grad_fn)]
        if grads:  # entered at the first output gradient: an output that the module itself also
            # uses (T5's position bias, added to its own scores) gets its gradient only at the end
            self._grad_hooks.append(register_multi_grad_hook(grads, lambda _: self._enter(entry), mode="any"))

    def backward_started(self, first: tuple[str, str]):
        """Forget forward-time state before autograd runs; `first` (the loss) runs first."""
        self._active[:] = [first]

    def __enter__(self):
        self._handles = [register_module_forward_pre_hook(self._pre_hook),
                         register_module_forward_hook(self._post_hook)]
        return self

    def __exit__(self, *exc):
        for h in self._handles + self._grad_hooks:
            h.remove()
        self._grad_hooks.clear()
        self._active.clear()
        self._input_grad_fns.clear()


def _is_descendant(path: str, ancestor: str) -> bool:
    return path != ancestor and (ancestor == "" or path.startswith(ancestor + "."))
