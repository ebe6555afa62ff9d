"""The seed's ConvNet trunk joined with an expression-atlas side branch ("atlas-convnet").

:class:`AtlasConvNet` reads two inputs per example:

- ``x``, shape ``(n, n_marks, n_bins)``: the normalised histone signal (the
  :class:`~histexpr.models.normalize.Predictor` in front normalises raw counts);
  the seed's convolution stack (:class:`~histexpr.models.convnet.ConvNet`'s layers,
  its head left out) turns it into an embedding of ``channels[-1]`` values, averaged
  over the positions it leaves;
- ``side``, shape ``(n, n_side)``: the gene's atlas features in the predicted cell
  type (standardised prior, atlas statistics, departure of the pooled histone
  profile from the gene's reference profile, histone score, and an indicator of
  whether the atlas knows the gene; made by :mod:`histexpr.estimators.atlas_neural`);
  a small MLP turns them into ``side_width`` values.

The embedding, the side MLP's output and the side features themselves are
concatenated; one hidden fusion layer (``side_width`` units) and the linear output
layer map them to ``(n, 1)``. They are joined *before the output layer* (not two
predictions added after it) so the network can weigh the histone evidence against
the atlas per example: trust the prior less where the histone signal says the gene
is silenced, and read the histone signal alone where the indicator says the atlas
does not know the gene (two outputs summed could do neither). The raw side
features in the concatenation give a short path to the prior, which on its own is
already a strong predictor, so the network mostly learns the correction.

:class:`AtlasFoldEnsemble` is the mean of such networks, one per cell-type fold
(``member_paths()`` for the "folds" member plan), like the seed's ensemble.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from histexpr.errors import ConfigError
from histexpr.models.convnet import ConvNet, ConvNetConfig


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
    """ConvNet trunk on the histone signal + MLP on the atlas features, one output.

    Parameters
    ----------
    cfg : AtlasConvNetConfig
    n_marks : int
        Input channels of the histone signal.
    n_bins : int
        Bins per example (any the ConvNet accepts).
    n_side : int
        Number of side (atlas) features.
    """

    def __init__(self, cfg: AtlasConvNetConfig, n_marks: int, n_bins: int, n_side: int):
        super().__init__()
        if n_side < 1:
            raise ConfigError(f"atlas-convnet: needs at least one side feature, got {n_side}")
        # The seed's layers exactly (padding rule for short windows included); only
        # its head is left out, since the output layer here also reads the atlas.
        self.trunk = ConvNet(cfg.trunk(), n_marks, n_bins).features
        slope = cfg.negative_slope
        self.side = nn.Sequential(
            nn.Linear(n_side, cfg.side_width),
            nn.LeakyReLU(slope),
            nn.Dropout(cfg.side_dropout),
            nn.Linear(cfg.side_width, cfg.side_width),
            nn.LeakyReLU(slope),
            nn.Dropout(cfg.side_dropout),
        )
        # One hidden layer over the joined vector lets the histone evidence and the
        # atlas interact (e.g. lean on the histone signal where the atlas indicator
        # says the gene is unknown); a linear layer alone could only add them.
        self.fuse = nn.Sequential(
            nn.Linear(cfg.channels[-1] + cfg.side_width + n_side, cfg.side_width),
            nn.LeakyReLU(slope),
        )
        self.head = nn.Linear(cfg.side_width, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Histone embedding, shape (n, channels[-1]), of normalised ``x`` (n, n_marks, n_bins)."""
        return self.trunk(x).mean(dim=2)

    def forward(self, x: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        x : torch.Tensor, shape (n, n_marks, n_bins)
            Normalised histone signal.
        side : torch.Tensor, shape (n, n_side)
            Atlas features.

        Returns
        -------
        torch.Tensor, shape (n, 1)
        """
        joined = torch.cat([self.embed(x), self.side(side), side], dim=1)
        return self.head(self.fuse(joined))


class AtlasFoldEnsemble(nn.Module):
    """Mean of :class:`AtlasConvNet` members trained on different cell-type folds.

    Parameters
    ----------
    members : sequence of nn.Module
        Each maps ``(x, side)`` to ``(n, 1)``.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def member_paths(self) -> list[str]:
        """Submodule path of each member (``self.get_submodule(path)``), in fold order."""
        return [f"members.{k}" for k in range(len(self.members))]

    def forward(self, x: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        x : torch.Tensor, shape (n, n_marks, n_bins)
        side : torch.Tensor, shape (n, n_side)

        Returns
        -------
        torch.Tensor, shape (n, 1)
        """
        outs = torch.cat([m(x, side) for m in self.members], dim=1)
        return outs.mean(dim=1, keepdim=True)


def build_atlas_net(cfg: AtlasConvNetConfig, n_marks: int, n_bins: int, n_side: int) -> nn.Module:
    """One :class:`AtlasConvNet` (``n_folds`` 1) or an :class:`AtlasFoldEnsemble` of them."""
    if cfg.n_folds == 1:
        return AtlasConvNet(cfg, n_marks, n_bins, n_side)
    return AtlasFoldEnsemble(
        [AtlasConvNet(cfg, n_marks, n_bins, n_side) for _ in range(cfg.n_folds)]
    )
