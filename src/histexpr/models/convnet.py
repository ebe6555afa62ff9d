"""The seed's convolutional network over the binned histone signal.

Eight unpadded ``Conv1d`` layers with kernel 3, each followed by
``BatchNorm1d -> Dropout -> LeakyReLU``. Layers 1, 3, 5 and 7 (1-based) have
stride 2 and double the channel count (64, 64, 128, 128, 256, 256, 512, 512), so
the length of an example shrinks 100 -> 49 -> 47 -> 23 -> 21 -> 10 -> 8 -> 3 -> 1
(``L_out = (L_in - kernel) // stride + 1``). A kernel-1 convolution then maps the
512 channels to the output. Widths, strides, kernel, dropout and negative slope
are configurable; when a configuration leaves a length above 1 the outputs are
averaged over the remaining positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from histexpr.errors import ConfigError


@dataclass(frozen=True)
class ConvNetConfig:
    """Architecture of :class:`ConvNet` (defaults are the seed's).

    Attributes
    ----------
    channels : tuple of int
        Output channels of each convolution layer (its length is the depth).
    strides : tuple of int
        Stride of each layer; same length as ``channels``.
    kernel : int
        Kernel size of every layer (no padding).
    dropout : float
        Dropout probability after each batch norm.
    negative_slope : float
        Slope of the LeakyReLU for negative inputs.
    """

    channels: tuple[int, ...] = (64, 64, 128, 128, 256, 256, 512, 512)
    strides: tuple[int, ...] = (2, 1, 2, 1, 2, 1, 2, 1)
    kernel: int = 3
    dropout: float = 0.1
    negative_slope: float = 0.01


def conv_lengths(n_bins: int, kernel: int, strides) -> list[int]:
    """Sequence length after each unpadded convolution, input length first.

    Parameters
    ----------
    n_bins : int
        Input length.
    kernel : int
    strides : sequence of int

    Returns
    -------
    list of int, length ``len(strides) + 1``
    """
    lengths = [int(n_bins)]
    for s in strides:
        lengths.append((lengths[-1] - kernel) // s + 1)
    return lengths


def _check(cfg: ConvNetConfig, n_bins: int) -> None:
    if len(cfg.channels) != len(cfg.strides):
        raise ConfigError(
            f"convnet: {len(cfg.channels)} channel widths but {len(cfg.strides)} strides"
        )
    if not cfg.channels or min(cfg.channels) < 1 or min(cfg.strides) < 1 or cfg.kernel < 1:
        raise ConfigError("convnet: channels, strides and kernel must be positive")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"convnet: dropout must be in [0, 1), got {cfg.dropout}")
    lengths = conv_lengths(n_bins, cfg.kernel, cfg.strides)
    if min(lengths) < 1:
        raise ConfigError(
            f"convnet: {n_bins} bins are too few for {len(cfg.channels)} layers (lengths {lengths})"
        )


class ConvNet(nn.Module):
    """Stack of unpadded convolutions reducing the bins to one position.

    Parameters
    ----------
    cfg : ConvNetConfig
    n_marks : int
        Input channels.
    n_bins : int
        Input length.
    n_outputs : int
        Output channels of the final kernel-1 convolution (1 for regression or
        binary logits, the number of cell types for a cell-type classifier).
    """

    def __init__(
        self,
        cfg: ConvNetConfig = ConvNetConfig(),
        n_marks: int = 5,
        n_bins: int = 100,
        n_outputs: int = 1,
    ):
        super().__init__()
        _check(cfg, n_bins)
        self.cfg = cfg
        self.out_length = conv_lengths(n_bins, cfg.kernel, cfg.strides)[-1]
        layers: list[nn.Module] = []
        c_in = n_marks
        for c_out, stride in zip(cfg.channels, cfg.strides, strict=True):
            layers += [
                nn.Conv1d(c_in, c_out, cfg.kernel, stride=stride),
                nn.BatchNorm1d(c_out),
                nn.Dropout(cfg.dropout),
                nn.LeakyReLU(cfg.negative_slope),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv1d(c_in, n_outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        x : torch.Tensor, shape (n, n_marks, n_bins)
            Normalised input.

        Returns
        -------
        torch.Tensor, shape (n, n_outputs)
        """
        return self.head(self.features(x)).mean(dim=2)
