"""Heads on the shared convolution trunk (:class:`~histexpr.models.convnet.ConvTrunk`).

A network is a trunk plus a head (gReLU's ``BaseModel(embedding, head)`` idea): the
trunk turns each cell's normalised histone signal into a feature map
``(n, channels, positions)``; the head reads it and whatever else the task gives:

- :class:`SingleCellHead`: one cell's expression (the seed's kernel-1 convolution
  averaged over the positions, plus the ridge skip path on the input);
- :class:`AtlasHead`: one cell's expression from the histone embedding *and* the
  atlas input, whose last column is the prior; the prior is added inside
  ``forward``, so the network's output is the prediction itself;
- :class:`SiameseHead`: the change between two cells from both embeddings,
  antisymmetric by construction, with optional own-expression outputs.

:func:`rename_legacy_keys` maps the parameter names of model directories saved
before the split into trunk and head onto these modules.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from histexpr.models.linear_skip import LinearSkip

__all__ = ["AtlasHead", "SiameseHead", "SingleCellHead", "draw_seed_readout", "rename_legacy_keys"]


def draw_seed_readout(in_channels: int) -> None:
    """Draw (and drop) the initial weights of the seed's kernel-1 read-out.

    The atlas and siamese networks used to build a whole ConvNet and keep only its
    stack, so its read-out's initialisation consumed random numbers before their own
    head was built. Drawing the same numbers keeps a seed's initial weights, hence
    its fitted predictions, what they were.
    """
    nn.Conv1d(in_channels, 1, 1)


class SingleCellHead(nn.Module):
    """Kernel-1 convolution of the feature map, averaged over positions, + a skip path.

    Parameters
    ----------
    in_channels : int
        Channels of the trunk's feature map.
    n_marks : int
        Channels of the network's (normalised) input, read by the skip path.
    n_outputs : int
        Output columns.
    linear_skip : int
        Regions of the ridge skip path (:mod:`histexpr.models.linear_skip`); 0: none.
    """

    def __init__(self, in_channels: int, n_marks: int, n_outputs: int = 1, linear_skip: int = 0):
        super().__init__()
        self.out = nn.Conv1d(in_channels, n_outputs, 1)
        self.skip = LinearSkip(n_marks, linear_skip) if linear_skip else None

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        h : torch.Tensor, shape (n, in_channels, positions)
            The trunk's feature map.
        x : torch.Tensor, shape (n, n_marks, n_bins)
            The normalised input (what the skip path reads).

        Returns
        -------
        torch.Tensor, shape (n, n_outputs)
        """
        out = self.out(h).mean(dim=2)
        return out if self.skip is None else out + self.skip(x)


class AtlasHead(nn.Module):
    """Histone embedding + atlas features -> expression, with the prior added inside.

    An MLP turns the atlas features into ``width`` values; the embedding, that output
    and the features themselves are joined *before the output layer*, so the network
    can weigh the histone evidence against the atlas per example (trust the prior
    less where the signal says the gene is silenced, read the signal alone where the
    indicator says the atlas does not know the gene); the raw features give a short
    path to the prior. The output layer predicts the correction to the prior.

    Parameters
    ----------
    in_channels : int
        Width of the histone embedding.
    n_side : int
        Atlas features (the atlas input has one more column: the prior).
    width : int
        Hidden units of the side MLP and of the fusion layer.
    dropout : float
        Dropout after each hidden layer of the side MLP.
    negative_slope : float
        LeakyReLU slope.
    """

    def __init__(
        self, in_channels: int, n_side: int, width: int, dropout: float, negative_slope: float
    ):
        super().__init__()
        self.side = nn.Sequential(
            nn.Linear(n_side, width),
            nn.LeakyReLU(negative_slope),
            nn.Dropout(dropout),
            nn.Linear(width, width),
            nn.LeakyReLU(negative_slope),
            nn.Dropout(dropout),
        )
        # One hidden layer over the joined vector lets the histone evidence and the
        # atlas interact; a linear layer alone could only add them.
        self.fuse = nn.Sequential(
            nn.Linear(in_channels + width + n_side, width), nn.LeakyReLU(negative_slope)
        )
        self.out = nn.Linear(width, 1)

    def forward(self, e: torch.Tensor, atlas: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        e : torch.Tensor, shape (n, in_channels)
            Histone embedding.
        atlas : torch.Tensor, shape (n, n_side + 1)
            Atlas features, then the prior the prediction starts from.

        Returns
        -------
        torch.Tensor, shape (n, 1)
        """
        side, prior = atlas[:, :-1], atlas[:, -1:]
        joined = torch.cat([e, self.side(side), side], dim=1)
        return self.out(self.fuse(joined)) + prior


class SiameseHead(nn.Module):
    """The change between two cells from their embeddings, antisymmetric by construction.

    With ``g`` the MLP on ``[eA - eB, eA, eB]``, the change is ``(g(A, B) - g(B, A)) / 2``,
    so ``f(B, A) = -f(A, B)`` exactly (float subtraction is antisymmetric) and
    ``f(A, A) = 0``. With ``aux`` one shared linear layer also predicts each cell's
    own expression from its embedding (DeepDiffChrome's auxiliary targets).

    Parameters
    ----------
    in_channels : int
        Width of each embedding.
    width : int
        Hidden units of the fold-change MLP.
    dropout : float
        Dropout before its output layer.
    negative_slope : float
    aux : bool
        Also output each cell's own expression.
    """

    def __init__(
        self, in_channels: int, width: int, dropout: float, negative_slope: float, aux: bool
    ):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(3 * in_channels, width),
            nn.LeakyReLU(negative_slope),
            nn.Dropout(dropout),
            nn.Linear(width, 1),
        )
        self.aux = nn.Linear(in_channels, 1) if aux else None

    @property
    def n_outputs(self) -> int:
        """Output columns: 3 (lfc, yA, yB) with the auxiliary outputs, else 1 (lfc)."""
        return 3 if self.aux is not None else 1

    def forward(self, ea: torch.Tensor, eb: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        ea, eb : torch.Tensor, shape (n, in_channels)
            Embeddings of cell A and cell B (row-aligned genes).

        Returns
        -------
        torch.Tensor, shape (n, 3) ``[lfc, yA, yB]`` with ``aux``, else (n, 1) ``[lfc]``
        """
        ab = self.fc(torch.cat([ea - eb, ea, eb], dim=1))
        ba = self.fc(torch.cat([eb - ea, eb, ea], dim=1))
        lfc = 0.5 * (ab - ba)
        if self.aux is None:
            return lfc
        return torch.cat([lfc, self.aux(ea), self.aux(eb)], dim=1)


#: Old parameter-name patterns -> their names in the trunk + head layout (in order).
LEGACY_KEYS: tuple[tuple[str, str], ...] = (
    (r"(^|\.)features\.(\d+)\.", r"\1trunk.layers.\2."),  # ConvNet's stack
    (r"(^|\.)trunk\.(\d+)\.", r"\1trunk.layers.\2."),  # the atlas and siamese trunks
    (r"(^|\.)head\.(weight|bias)$", r"\1head.out.\2"),  # ConvNet's and the atlas read-out
    (r"(^|\.)skip\.", r"\1head.skip."),
    (r"(^|\.)(side|fuse)\.", r"\1head.\2."),  # the atlas side MLP and fusion layer
    (r"(^|\.)head\.(\d+)\.", r"\1head.fc.\2."),  # the siamese fold-change MLP
    (r"(^|\.)aux\.", r"\1head.aux."),
)


def rename_legacy_keys(state: dict, expected) -> dict:
    """``state`` with old parameter names renamed to the names in ``expected``.

    A key is renamed only when it is not expected as it stands and its renamed form
    is (so the layers of other networks that happen to be called ``features``, e.g.
    DeepChrome's, are left alone); every other key is kept.

    Parameters
    ----------
    state : dict of str to tensor
        A state dict as saved (any layout).
    expected : collection of str
        The keys of the module it is for (``module.state_dict().keys()``).

    Returns
    -------
    dict of str to tensor
    """
    expected = set(expected)
    out = {}
    for key, value in state.items():
        new = key
        if key not in expected:
            for pattern, repl in LEGACY_KEYS:
                new = re.sub(pattern, repl, new)
            new = new if new in expected else key
        out[new] = value
    return out
