"""Combinations of sub-models: the fold ensemble and the cell-type-weighted mixture.

Both take the members as built modules (see :func:`histexpr.models.build_net`);
how the members are trained (which cell types each sees) is the training
runner's business (:mod:`histexpr.estimators.neural`).

For binary classification members output logits; the combinations average
*probabilities* and return the logit of the average, so the output is again a
logit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from histexpr.errors import ConfigError
from histexpr.models.convnet import ConvNetConfig

#: Clamp for turning averaged probabilities back into logits.
_EPS = 1e-6


def _as_column(out: torch.Tensor) -> torch.Tensor:
    return out if out.ndim == 2 else out[:, None]


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(_EPS, 1.0 - _EPS)
    return torch.log(p) - torch.log1p(-p)


@dataclass(frozen=True)
class EnsembleConfig(ConvNetConfig):
    """Architecture of the "ensemble" kind: ConvNet members, one per cell-type fold.

    Attributes
    ----------
    n_folds : int
        Members (cell-type folds); at least 2. The other fields are each member's
        :class:`~histexpr.models.ConvNetConfig`.
    """

    n_folds: int = 3

    def __post_init__(self):
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        if isinstance(self.n_folds, bool) or not isinstance(self.n_folds, int) or self.n_folds < 2:
            raise ConfigError(f"n_folds must be an integer >= 2, got {self.n_folds!r}")


class FoldEnsemble(nn.Module):
    """Mean of members trained on different cell-type folds (any head: every member
    takes the same inputs).

    Parameters
    ----------
    members : sequence of nn.Module
        Each maps normalised input ``(n, n_marks, n_bins)`` (and any further inputs,
        e.g. an atlas network's atlas features) to ``(n, 1)``.
    logits : bool
        Members output logits (classification): average probabilities.
    """

    def __init__(self, members: Sequence[nn.Module], logits: bool = False):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.logits = logits

    def member_paths(self) -> list[str]:
        """Submodule path of each member (``self.get_submodule(path)``), in fold order."""
        return [f"members.{k}" for k in range(len(self.members))]

    def forward(self, x: torch.Tensor, *side: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        x : torch.Tensor, shape (n, n_marks, n_bins)
        *side : torch.Tensor, shape (n, ...)
            Further inputs of the members, passed to each as they are.

        Returns
        -------
        torch.Tensor, shape (n, 1)
        """
        outs = torch.cat([_as_column(m(x, *side)) for m in self.members], dim=1)
        if self.logits:
            return _logit(torch.sigmoid(outs).mean(dim=1, keepdim=True))
        return outs.mean(dim=1, keepdim=True)


class CellTypeWeighted(nn.Module):
    """Cell-type-specific experts weighted by a cell-type classifier.

    The gate predicts, from the histone signal alone, which training cell type an
    example looks like; its softmax probabilities weight the experts, each
    trained on one cell type. This lets an unseen cell type borrow from the
    training cell types it resembles.

    Parameters
    ----------
    gate : nn.Module
        Maps ``(n, n_marks, n_bins)`` to logits ``(n, n_cells)``.
    experts : sequence of nn.Module
        ``n_cells`` modules mapping ``(n, n_marks, n_bins)`` to ``(n, 1)``, in
        the order of the gate's classes.
    logits : bool
        Experts output logits (classification): mix probabilities.
    """

    def __init__(self, gate: nn.Module, experts: Sequence[nn.Module], logits: bool = False):
        super().__init__()
        self.gate = gate
        self.experts = nn.ModuleList(experts)
        self.logits = logits

    def gate_path(self) -> str:
        """Submodule path of the gate (the cell-type classifier)."""
        return "gate"

    def expert_paths(self) -> list[str]:
        """Submodule path of each expert, in the order of the gate's classes."""
        return [f"experts.{i}" for i in range(len(self.experts))]

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Gate probabilities, shape (n, n_cells)."""
        return torch.softmax(self.gate(x), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        x : torch.Tensor, shape (n, n_marks, n_bins)

        Returns
        -------
        torch.Tensor, shape (n, 1)
        """
        w = self.weights(x)
        outs = torch.cat([_as_column(e(x)) for e in self.experts], dim=1)
        if self.logits:
            return _logit((w * torch.sigmoid(outs)).sum(dim=1, keepdim=True))
        return (w * outs).sum(dim=1, keepdim=True)
