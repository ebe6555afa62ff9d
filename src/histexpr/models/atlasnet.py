"""The seed's ConvNet trunk with an expression-atlas head ("atlas-convnet").

:class:`AtlasConvNet` reads two inputs per example:

- ``x``, shape ``(n, n_marks, n_bins)``: the normalised histone signal (the
  :class:`~histexpr.models.normalize.Predictor` in front normalises raw counts); the
  seed's convolution stack (:class:`~histexpr.models.convnet.ConvTrunk`) turns it into
  an embedding of ``channels[-1]`` values, averaged over the positions it leaves;
- ``atlas``, shape ``(n, n_side + 1)``: the gene's atlas features in the predicted
  cell type (standardised prior, atlas statistics, departure of the pooled histone
  profile from the gene's reference profile, histone score, and an indicator of
  whether the atlas knows the gene; made by :mod:`histexpr.estimators.atlas_neural`),
  then the prior itself (the training mean where the atlas does not know the gene).

The :class:`~histexpr.models.heads.AtlasHead` joins the embedding and the features
before its output layer and adds the prior to that output, so the network's output
is the prediction: training starts from the prior and learns the correction, and
gradients with respect to ``x`` are those of the histone part alone.

With ``n_folds > 1`` the networks of the cell-type folds are averaged by the same
:class:`~histexpr.models.ensemble.FoldEnsemble` as the seed's ensemble.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from histexpr.errors import ConfigError
from histexpr.models.convnet import ConvNetConfig, ConvTrunk
from histexpr.models.ensemble import FoldEnsemble
from histexpr.models.heads import AtlasHead, draw_seed_readout


@dataclass(frozen=True)
class AtlasConvNetConfig(ConvNetConfig):
    """Architecture of "atlas-convnet" (trunk defaults are the seed's ConvNet).

    Attributes
    ----------
    n_folds : int
        1: one network; > 1: a fold ensemble, member ``k`` trained outside
        cell-type fold ``k`` (the seed's ensemble design).
    side_width : int
        Width of the two hidden layers of the side (atlas) MLP.
    side_dropout : float
        Dropout after each hidden layer of the side MLP.
    """

    n_folds: int = 3
    side_width: int = 32
    side_dropout: float = 0.1

    def __post_init__(self):
        if isinstance(self.n_folds, bool) or not isinstance(self.n_folds, int) or self.n_folds < 1:
            raise ConfigError(f"n_folds must be an integer >= 1, got {self.n_folds!r}")
        if isinstance(self.side_width, bool) or self.side_width < 1:
            raise ConfigError(f"side_width must be an integer >= 1, got {self.side_width!r}")
        if not 0.0 <= self.side_dropout < 1.0:
            raise ConfigError(f"side_dropout must be in [0, 1), got {self.side_dropout}")

    def trunk(self) -> ConvNetConfig:
        """The ConvNet fields alone (the trunk's config)."""
        return ConvNetConfig(
            self.channels, self.strides, self.kernel, self.dropout, self.negative_slope
        )


class AtlasConvNet(nn.Module):
    """:class:`~histexpr.models.convnet.ConvTrunk` + :class:`~histexpr.models.heads.AtlasHead`.

    Parameters
    ----------
    cfg : AtlasConvNetConfig
    n_marks : int
        Input channels of the histone signal.
    n_bins : int
        Bins per example (any the trunk accepts).
    n_side : int
        Number of atlas features (the atlas input has one more column: the prior).
    """

    def __init__(self, cfg: AtlasConvNetConfig, n_marks: int, n_bins: int, n_side: int):
        super().__init__()
        if n_side < 1:
            raise ConfigError(f"atlas-convnet: needs at least one side feature, got {n_side}")
        self.trunk = ConvTrunk(cfg.trunk(), n_marks, n_bins)
        draw_seed_readout(self.trunk.out_channels)
        self.head = AtlasHead(
            self.trunk.out_channels, n_side, cfg.side_width, cfg.side_dropout, cfg.negative_slope
        )

    def forward(self, x: torch.Tensor, atlas: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        x : torch.Tensor, shape (n, n_marks, n_bins)
            Normalised histone signal.
        atlas : torch.Tensor, shape (n, n_side + 1)
            Atlas features, then the prior (added to the output inside the head).

        Returns
        -------
        torch.Tensor, shape (n, 1)
        """
        return self.head(self.trunk.embed(x), atlas)


def build_atlas_net(cfg: AtlasConvNetConfig, n_marks: int, n_bins: int, n_side: int) -> nn.Module:
    """One :class:`AtlasConvNet` (``n_folds`` 1) or a :class:`FoldEnsemble` of them."""
    if cfg.n_folds == 1:
        return AtlasConvNet(cfg, n_marks, n_bins, n_side)
    return FoldEnsemble([AtlasConvNet(cfg, n_marks, n_bins, n_side) for _ in range(cfg.n_folds)])
