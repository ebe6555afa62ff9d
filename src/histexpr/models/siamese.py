"""A siamese convolutional network for the change of expression between two cell types.

One trunk (the seed's :class:`~histexpr.models.convnet.ConvTrunk`, shared by both
cells: the same weights see cell A and cell B) maps each cell's normalised signal
``(n, marks, bins)`` to an embedding ``e`` (the trunk's last channels, averaged over
the remaining positions). A :class:`~histexpr.models.heads.SiameseHead` reads ``[eA - eB, eA, eB]`` (the difference and the
concatenation) and predicts the log fold change; with ``aux`` a shared linear head
also predicts each cell's own expression from its embedding (DeepDiffChrome's
auxiliary targets), so the trunk learns what sets expression, not only the change.

Antisymmetry is built in: with ``h`` the head, the predicted change is
``(h(A, B) - h(B, A)) / 2``, so ``f(B, A) = -f(A, B)`` holds exactly (float
subtraction is antisymmetric), in training and at prediction, and ``f(A, A) = 0``.
The trunk runs on each cell separately, so swapping the cells swaps bit-identical
embeddings.

:class:`PairPredictor` puts the input normaliser (shared by both cells) in front, so
the saved weights hold its statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from histexpr.errors import ConfigError
from histexpr.models.convnet import ConvNetConfig, ConvTrunk
from histexpr.models.heads import SiameseHead, draw_seed_readout
from histexpr.models.normalize import InputNormalizer

__all__ = ["DiffConvNet", "DiffConvNetConfig", "MidpointPath", "PairPredictor"]

_SEED = ConvNetConfig()


@dataclass(frozen=True)
class DiffConvNetConfig:
    """Architecture of :class:`DiffConvNet` (trunk defaults are the seed's ConvNet).

    Attributes
    ----------
    channels : tuple of int
        Output channels of each trunk convolution (its length is the depth).
    strides : tuple of int
        Stride of each trunk layer; same length as ``channels``.
    kernel : int
        Kernel size of every trunk layer.
    dropout : float
        Dropout probability after each trunk batch norm.
    negative_slope : float
        Slope of the LeakyReLUs for negative inputs.
    head_width : int
        Hidden units of the fold-change head.
    head_dropout : float
        Dropout before the fold-change head's output layer.
    aux : bool
        Also predict each cell's own expression (auxiliary heads; output (n, 3)).
    """

    channels: tuple[int, ...] = _SEED.channels
    strides: tuple[int, ...] = _SEED.strides
    kernel: int = _SEED.kernel
    dropout: float = _SEED.dropout
    negative_slope: float = _SEED.negative_slope
    head_width: int = 128
    head_dropout: float = 0.1
    aux: bool = True

    def __post_init__(self):
        if len(self.channels) != len(self.strides):
            raise ConfigError(
                f"diff-convnet: {len(self.channels)} channel widths but {len(self.strides)} strides"
            )
        if not self.channels or min(self.channels) < 1 or min(self.strides) < 1 or self.kernel < 1:
            raise ConfigError("diff-convnet: channels, strides and kernel must be positive")
        for name in ("dropout", "head_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"diff-convnet: {name} must be in [0, 1), got {value}")
        if self.head_width < 1:
            raise ConfigError(f"diff-convnet: head_width must be >= 1, got {self.head_width}")

    def trunk(self) -> ConvNetConfig:
        """The trunk's ConvNet configuration."""
        return ConvNetConfig(
            self.channels, self.strides, self.kernel, self.dropout, self.negative_slope
        )


class DiffConvNet(nn.Module):
    """:class:`~histexpr.models.convnet.ConvTrunk` on each cell + a
    :class:`~histexpr.models.heads.SiameseHead` on both embeddings.

    Parameters
    ----------
    cfg : DiffConvNetConfig
    n_marks : int
    n_bins : int
        Any bin count the trunk accepts (see :mod:`histexpr.models.convnet`).
    """

    def __init__(self, cfg: DiffConvNetConfig = DiffConvNetConfig(), n_marks=5, n_bins=100):
        super().__init__()
        self.cfg = cfg
        self.trunk = ConvTrunk(cfg.trunk(), n_marks, n_bins)
        draw_seed_readout(self.trunk.out_channels)
        self.head = SiameseHead(
            self.trunk.out_channels, cfg.head_width, cfg.head_dropout, cfg.negative_slope, cfg.aux
        )

    @property
    def n_outputs(self) -> int:
        """Output columns: 3 (lfc, yA, yB) with the auxiliary outputs, else 1 (lfc)."""
        return self.head.n_outputs

    def forward(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        za, zb : torch.Tensor, shape (n, n_marks, n_bins)
            Normalised signal of cell A and cell B (row-aligned genes).

        Returns
        -------
        torch.Tensor, shape (n, 3) ``[lfc, yA, yB]`` with ``aux``, else (n, 1) ``[lfc]``
        """
        # Separate trunk passes: swapping the cells swaps identical embeddings.
        return self.head(self.trunk.embed(za), self.trunk.embed(zb))


class MidpointPath(nn.Module):
    """A pair network as a function of the half difference ``d`` around a midpoint ``m``.

    ``forward(d, m) = net(m + d, m - d)``: at ``d = 0`` both cells are the midpoint and
    an antisymmetric network predicts exactly 0, so integrated gradients of this module
    with respect to ``d`` from 0 (``m`` held fixed) attribute the predicted change to
    each mark and bin (gradient of cell A minus that of cell B, times ``d``).

    Parameters
    ----------
    net : nn.Module
        Maps normalised ``(za, zb)`` to ``(n, k)``.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, d: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``d``, ``m``: shape (n, n_marks, n_bins) -> the network's output (n, k)."""
        return self.net(m + d, m - d)


class PairPredictor(nn.Module):
    """The input normaliser (shared by both cells) in front of a pair network.

    Parameters
    ----------
    normalizer : InputNormalizer
    net : DiffConvNet
    """

    def __init__(self, normalizer: InputNormalizer, net: DiffConvNet):
        super().__init__()
        self.normalizer = normalizer
        self.net = net

    def forward(self, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        xa, xb : torch.Tensor, shape (n, n_marks, n_bins)
            Raw read counts of cell A and cell B.

        Returns
        -------
        torch.Tensor, shape (n, net.n_outputs)
        """
        return self.net(self.normalizer(xa), self.normalizer(xb))
