"""Inference-only rewrite of trained models that compute the same function faster.

In eval mode a ``BatchNorm1d`` after a convolution is an affine map per channel
and dropout is the identity, so each ``Conv1d -> BatchNorm1d -> Dropout`` folds
into one convolution with rescaled weights and bias (Ioffe & Szegedy 2015, sec.
3.2, applied to the running statistics). That removes two passes over every
activation tensor: 5-15% of the prediction time of the seed ConvNet on CPU
(``docs/benchmarks.md``).

The rewrite works on a deep copy; the original module is left untouched.
(Stacking the members of a fold ensemble into one network of grouped
convolutions was measured too and is slower with oneDNN on CPU; see
``benchmarks/bench_inference.py``.)
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _fold_sequential(seq: nn.Sequential) -> nn.Sequential:
    layers = list(seq)
    out: list[nn.Module] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if (
            isinstance(layer, nn.Conv1d)
            and isinstance(nxt, nn.BatchNorm1d)
            and nxt.running_mean is not None
            and nxt.running_var is not None
        ):
            out.append(fuse_conv_bn_eval(layer, nxt))
            i += 2
            continue
        if not isinstance(layer, nn.Dropout):  # the identity in eval mode
            out.append(layer)
        i += 1
    return nn.Sequential(*out)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """An eval-mode copy of ``module`` with every conv + batch norm pair folded.

    Parameters
    ----------
    module : nn.Module
        Any module; ``nn.Sequential`` blocks with ``Conv1d`` directly followed
        by ``BatchNorm1d`` (running statistics tracked) are rewritten, and
        their ``Dropout`` layers dropped.

    Returns
    -------
    nn.Module
        A new module in eval mode computing the same outputs as ``module.eval()``
        up to float rounding.
    """
    model = copy.deepcopy(module).eval()

    def visit(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, nn.Sequential):
                setattr(parent, name, _fold_sequential(child))
                visit(getattr(parent, name))
            else:
                visit(child)

    if isinstance(model, nn.Sequential):
        model = _fold_sequential(model)
    visit(model)
    return model.eval()
