"""The seed's convolutional network over the binned histone signal.

Eight unpadded ``Conv1d`` layers with kernel 3, each followed by
``BatchNorm1d -> Dropout -> LeakyReLU``. Layers 1, 3, 5 and 7 (1-based) have
stride 2 and double the channel count (64, 64, 128, 128, 256, 256, 512, 512), so
the length of an example shrinks 100 -> 49 -> 47 -> 23 -> 21 -> 10 -> 8 -> 3 -> 1
(``L_out = (L_in - kernel) // stride + 1``). A kernel-1 convolution then maps the
512 channels to the output. The stack is one module, :class:`ConvTrunk`, shared by
every network built on it; the read-out is a head of :mod:`histexpr.models.heads`
(:class:`ConvNet` = trunk + :class:`~histexpr.models.heads.SingleCellHead`). Widths, strides, kernel, dropout and negative slope
are configurable; when a configuration leaves a length above 1 the outputs are
averaged over the remaining positions.

Any window (rule for bin counts other than 100): the layers stay the same (same
weights, same parameter count for every bin count); when the unpadded stack would
shrink the input below one position, the *last* ``k`` layers get "same"-style
padding ``kernel // 2``, with the smallest ``k`` that keeps every length >= 1
(:func:`padded_layers`). At 100 bins, and at every count from 91 up, ``k = 0``: the
seed's exact layout. Longer inputs (up to 400 bins and beyond) keep ``k = 0`` and
average the head over the remaining positions (20 at 400 bins); shorter ones pad,
e.g. 40 bins: ``k = 3``, lengths 40 -> 19 -> 17 -> 8 -> 6 -> 2 -> 2 -> 1 -> 1; 10 bins:
``k = 6``. Padding adds no weights, so the parameter count does not depend on the bins.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from histexpr.errors import ConfigError
from histexpr.models.blocks import ConvStack
from histexpr.models.heads import SingleCellHead

#: The seed's widths: the default, and the widths that :func:`sized_for` scales.
SEED_CHANNELS = (64, 64, 128, 128, 256, 256, 512, 512)


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
    width_examples : int
        Training examples from which the default ``channels`` are used as given; with
        fewer, ``fit`` scales every width by ``sqrt(n / width_examples)`` (never below
        ``min_width``, see :func:`sized_for`). 0, or explicit channels: as given.
    min_width : int
        Narrowest channel count the scaling gives.
    linear_skip : int
        Regions of the ridge read-out added to the output (:mod:`histexpr.models.linear_skip`;
        fitted in closed form before training, regression only); 0: none.
    """

    channels: tuple[int, ...] = SEED_CHANNELS
    strides: tuple[int, ...] = (2, 1, 2, 1, 2, 1, 2, 1)
    kernel: int = 3
    dropout: float = 0.1
    negative_slope: float = 0.01
    width_examples: int = 100_000
    min_width: int = 8
    linear_skip: int = 10


def sized_for(cfg: ConvNetConfig, n_train: int) -> ConvNetConfig:
    """``cfg`` with its widths chosen for ``n_train`` training examples.

    From ``width_examples`` examples on (or with ``width_examples=0``) the widths are
    ``cfg.channels``; below, each is ``max(min_width, round(c * sqrt(n / width_examples)))``
    (the seed's 64..512 from 10^5 examples; 8..32 at 400 genes of one cell type, 10..81 at
    2,500 examples). Only the seed's default widths are scaled: channels set explicitly
    are used as given. The result has ``width_examples=0``, so the widths it holds are
    final (a saved model, or a second fit, keeps them).
    """
    if cfg.width_examples <= 0 or tuple(cfg.channels) != SEED_CHANNELS:
        return cfg
    scale = min(1.0, (max(int(n_train), 1) / cfg.width_examples) ** 0.5)
    widths = tuple(max(cfg.min_width, round(c * scale)) for c in cfg.channels)
    return dataclasses.replace(cfg, channels=widths, width_examples=0)


def conv_lengths(n_bins: int, kernel: int, strides, n_padded: int = 0) -> list[int]:
    """Sequence length after each convolution, input length first.

    Parameters
    ----------
    n_bins : int
        Input length.
    kernel : int
    strides : sequence of int
    n_padded : int
        How many of the last layers are padded by ``kernel // 2`` on each side.

    Returns
    -------
    list of int, length ``len(strides) + 1``
    """
    lengths = [int(n_bins)]
    first_padded = len(strides) - n_padded
    for i, s in enumerate(strides):
        pad = kernel // 2 if i >= first_padded else 0
        lengths.append((lengths[-1] + 2 * pad - kernel) // s + 1)
    return lengths


def padded_layers(n_bins: int, kernel: int, strides) -> int:
    """Smallest number of last layers to pad so that every length stays >= 1.

    Raises
    ------
    ConfigError
        When even padding every layer leaves no position (e.g. kernel 3 on 1 bin).
    """
    strides = list(strides)
    for k in range(len(strides) + 1):
        if min(conv_lengths(n_bins, kernel, strides, k)) >= 1:
            return k
    raise ConfigError(
        f"convnet: {n_bins} bins are too few for {len(strides)} layers of kernel {kernel}"
    )


def _check(cfg: ConvNetConfig, n_bins: int) -> None:
    if len(cfg.channels) != len(cfg.strides):
        raise ConfigError(
            f"convnet: {len(cfg.channels)} channel widths but {len(cfg.strides)} strides"
        )
    if not cfg.channels or min(cfg.channels) < 1 or min(cfg.strides) < 1 or cfg.kernel < 1:
        raise ConfigError("convnet: channels, strides and kernel must be positive")
    if cfg.linear_skip < 0:
        raise ConfigError(f"convnet: linear_skip must be >= 0, got {cfg.linear_skip}")
    if cfg.width_examples < 0 or cfg.min_width < 1:
        raise ConfigError("convnet: width_examples must be >= 0 and min_width >= 1")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"convnet: dropout must be in [0, 1), got {cfg.dropout}")
    padded_layers(n_bins, cfg.kernel, cfg.strides)


class ConvTrunk(nn.Module):
    """The seed's convolution stack: histone signal -> feature map (the shared trunk).

    ``layers`` is the seed's ``Conv1d -> BatchNorm1d -> Dropout -> LeakyReLU`` stack
    (with the padding rule of the module docstring); every head of
    :mod:`histexpr.models.heads` reads its output.

    Parameters
    ----------
    cfg : ConvNetConfig
        Only ``channels``, ``strides``, ``kernel``, ``dropout`` and ``negative_slope``
        are read.
    n_marks : int
        Input channels.
    n_bins : int
        Input length (any; see the module docstring for the padding rule).

    Attributes
    ----------
    out_channels : int
        Channels of the feature map (``cfg.channels[-1]``).
    out_length : int
        Positions of the feature map.
    """

    def __init__(self, cfg: ConvNetConfig, n_marks: int, n_bins: int):
        super().__init__()
        _check(cfg, n_bins)
        self.n_padded = padded_layers(n_bins, cfg.kernel, cfg.strides)
        self.out_length = conv_lengths(n_bins, cfg.kernel, cfg.strides, self.n_padded)[-1]
        self.out_channels = cfg.channels[-1]
        first_padded = len(cfg.strides) - self.n_padded
        layers: list[nn.Module] = []
        c_in = n_marks
        for i, (c_out, stride) in enumerate(zip(cfg.channels, cfg.strides, strict=True)):
            pad = cfg.kernel // 2 if i >= first_padded else 0
            layers += [
                nn.Conv1d(c_in, c_out, cfg.kernel, stride=stride, padding=pad),
                nn.BatchNorm1d(c_out),
                nn.Dropout(cfg.dropout),
                nn.LeakyReLU(cfg.negative_slope),
            ]
            c_in = c_out
        # ConvStack: the plain stack in eval mode, a faster layout in training (blocks.py)
        self.layers = ConvStack(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``x`` (n, n_marks, n_bins) -> feature map (n, out_channels, out_length)."""
        return self.layers(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map averaged over its positions, shape (n, out_channels)."""
        return self.layers(x).mean(dim=2)


class ConvNet(nn.Module):
    """The seed's network: :class:`ConvTrunk` + :class:`~histexpr.models.heads.SingleCellHead`.

    Parameters
    ----------
    cfg : ConvNetConfig
    n_marks : int
        Input channels.
    n_bins : int
        Input length (any; see the module docstring for the padding rule).
    n_outputs : int
        Output channels of the head's kernel-1 convolution (1 for regression or
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
        self.cfg = cfg
        self.trunk = ConvTrunk(cfg, n_marks, n_bins)
        # The ridge skip path only makes sense for one output (a value or a logit).
        skip = cfg.linear_skip if n_outputs == 1 else 0
        self.head = SingleCellHead(self.trunk.out_channels, n_marks, n_outputs, skip)

    @property
    def n_padded(self) -> int:
        """Last trunk layers padded (see the module docstring)."""
        return self.trunk.n_padded

    @property
    def out_length(self) -> int:
        """Positions the trunk leaves (the head averages over them)."""
        return self.trunk.out_length

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
        return self.head(self.trunk(x), x)
