"""A faster training path for stacks of ``Conv1d -> BatchNorm1d -> Dropout -> LeakyReLU``.

:class:`ConvStack` is an ``nn.Sequential`` of exactly those layers (same
children, so the same parameters and state-dict keys as the plain stack). In
eval mode it *is* the plain stack. In training mode it runs the same function
in another layout: activations are ``(n, length, channels)`` ("NLC") instead of
``(n, channels, length)``, and each convolution is one matrix product of the
``kernel`` shifted views of its input concatenated along the channels
(im2col) with the weight reshaped to ``(out, kernel * in)``.

Why: with oneDNN on CPU the backward pass of the deep layers of the seed
ConvNet (hundreds of channels, 1 to 10 positions) runs at a few percent of the
machine's matmul peak, while the same arithmetic as one ``(n * L_out, K * C_in)``
by ``(K * C_in, C_out)`` product runs near it, in bf16 under autocast too
(``docs/benchmarks.md``, section 1). In NLC layout batch norm is
``BatchNorm1d`` over the 2-D view ``(n * length, channels)`` (statistics over
the same elements, so the same running averages), and dropout and LeakyReLU are
element-wise, so no transposes are needed between layers.

The dropout mask is drawn from one random byte per element
(:func:`dropout_mask`), several times cheaper on CPU than ``bernoulli_``; the
keep probability is rounded to a multiple of 1/256 (0.1 -> 26/256 = 0.1016), a
difference far below the noise of a training run. The masks differ from the
plain stack's, so the same seed trains to a different (equally good) model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: Layer types the NLC path knows; a stack with any other layer runs the plain path.
_KNOWN = (nn.Conv1d, nn.BatchNorm1d, nn.Dropout, nn.LeakyReLU)


class _Im2col(torch.autograd.Function):
    """``cat([x[:, j : j + span : s] for j in range(k)], 2)`` with a one-buffer backward.

    Autograd's own backward of the concatenated slices allocates a zero tensor
    of the input's size per slice and adds them up; here the gradient of every
    slice is added into one buffer.
    """

    @staticmethod
    def forward(ctx, x, k: int, s: int, n_out: int):
        span = s * (n_out - 1) + 1
        ctx.geometry = (x.shape, k, s, span)
        return torch.cat([x[:, j : j + span : s] for j in range(k)], 2)

    @staticmethod
    def backward(ctx, grad):
        shape, k, s, span = ctx.geometry
        c = shape[2]
        out = grad.new_zeros(shape)
        for j in range(k):
            out[:, j : j + span : s] += grad[:, :, j * c : (j + 1) * c]
        return out, None, None, None


def conv1d_nlc(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``conv`` applied to an NLC tensor, as one matrix product (im2col).

    Parameters
    ----------
    x : torch.Tensor, shape (n, length, in_channels)
    conv : nn.Conv1d
        Groups 1, dilation 1, numeric padding (zeros).

    Returns
    -------
    torch.Tensor, shape (n, out_length, out_channels)
    """
    (k,), (s,), (p,) = conv.kernel_size, conv.stride, conv.padding
    if p:
        x = F.pad(x, (0, 0, p, p))
    n_out = (x.shape[1] - k) // s + 1
    # Column j * C_in + c holds x[:, t * s + j, c]: the weight's (out, in, k) is
    # reordered to (out, k, in) to match.
    cols = x if k == 1 and s == 1 else _Im2col.apply(x, k, s, n_out)
    weight = conv.weight.permute(0, 2, 1).reshape(conv.out_channels, -1)
    return F.linear(cols, weight, conv.bias)


def dropout_mask(shape, p: float, dtype: torch.dtype) -> torch.Tensor:
    """Inverted-dropout multiplier: 0 with probability ~``p``, else ``1 / (1 - p')``.

    One random byte per element is compared with ``round(256 p)``, so the drop
    probability actually used is ``p' = round(256 p) / 256`` (the rescaling uses
    ``p'`` too, keeping the expectation exact). The bytes are those of full-range
    64-bit draws (uniform in every byte): one generator call gives 8 elements,
    2.6x faster than drawing bytes and 6x faster than ``bernoulli_`` (measured,
    one thread, 6 M elements).
    """
    cut = round(256 * p)
    keep = 1.0 - cut / 256
    n = 1
    for d in shape:
        n *= int(d)
    words = torch.empty(-(-n // 8), dtype=torch.int64).random_(-(2**63), None)
    bits = words.view(torch.uint8)[:n].view(shape)
    return (bits >= cut).to(dtype) * (1.0 / keep)


def _plain_path_only(stack: nn.Sequential) -> bool:
    for layer in stack:
        if not isinstance(layer, _KNOWN):
            return True
        if isinstance(layer, nn.Conv1d) and (
            layer.groups != 1
            or layer.dilation != (1,)
            or isinstance(layer.padding, str)
            or layer.padding_mode != "zeros"
        ):
            return True
    return False


class ConvStack(nn.Sequential):
    """``nn.Sequential`` of conv / batch norm / dropout / LeakyReLU layers, trained in NLC.

    Takes and returns ``(n, channels, length)`` like the plain stack; see the
    module docstring for what differs in training mode.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        x : torch.Tensor, shape (n, in_channels, length)

        Returns
        -------
        torch.Tensor, shape (n, out_channels, out_length)
        """
        if not self.training or _plain_path_only(self):
            return super().forward(x)
        h = x.transpose(1, 2)
        for layer in self:
            if isinstance(layer, nn.Conv1d):
                h = conv1d_nlc(h, layer)
            elif isinstance(layer, nn.BatchNorm1d):
                # The module itself on the 2-D view: its running statistics, and
                # a subclass's own statistics (the DDP global batch norm), apply.
                h = layer(h.reshape(-1, h.shape[2])).view(h.shape)
            elif isinstance(layer, nn.Dropout):
                if layer.p > 0:
                    h = h * dropout_mask(h.shape, layer.p, h.dtype)
            else:
                h = F.leaky_relu(h, layer.negative_slope)
        return h.transpose(1, 2)
