"""Neural models: pure ``nn.Module`` s and the configs that build them.

Every neural kind is a :class:`~histexpr.models.normalize.Predictor`: the input
normaliser followed by a network (:func:`build_net`). Each kind is one entry of the
registry :data:`NETWORKS` (:mod:`histexpr.models.registry`). Training lives in
:mod:`histexpr.estimators.neural`; baselines in :mod:`histexpr.estimators.baselines` (not
imported here, so importing the models does not pull in scikit-learn).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from histexpr.models.convnet import ConvNet, ConvNetConfig, conv_lengths
from histexpr.models.ensemble import CellTypeWeighted, EnsembleConfig, FoldEnsemble
from histexpr.models.normalize import InputNormalizer, NormStats, Predictor, norm_stats
from histexpr.models.peers import (
    AttentionMaps,
    AttentiveChrome,
    AttentiveChromeConfig,
    DeepChromeCNN,
    DeepChromeConfig,
)
from histexpr.models.registry import NETWORKS, PLANS, Network, network, register, unregister

__all__ = [
    "MODEL_CONFIGS",
    "NETWORKS",
    "PLANS",
    "AttentionMaps",
    "AttentiveChrome",
    "AttentiveChromeConfig",
    "CellTypeWeighted",
    "ConvNet",
    "ConvNetConfig",
    "DeepChromeCNN",
    "DeepChromeConfig",
    "EnsembleConfig",
    "FoldEnsemble",
    "InputNormalizer",
    "Network",
    "NormStats",
    "Predictor",
    "build_model",
    "build_net",
    "conv_lengths",
    "network",
    "norm_stats",
    "register",
    "unregister",
]


class _ConfigView(Mapping):
    """Neural kind -> its architecture dataclass, read live from the registry."""

    def __getitem__(self, kind: str) -> type:
        if kind not in NETWORKS:
            raise KeyError(kind)
        return NETWORKS[kind].config_cls

    def __iter__(self):
        return iter(NETWORKS)

    def __len__(self) -> int:
        return len(NETWORKS)


#: Neural kind -> the frozen dataclass describing its architecture (from :data:`NETWORKS`).
MODEL_CONFIGS: Mapping[str, type] = _ConfigView()


def build_net(kind: str, cfg, n_marks: int, n_bins: int, **shape) -> nn.Module:
    """The untrained network of ``kind`` (input: normalised signal), by its registry entry.

    Parameters
    ----------
    kind : str
        A key of :data:`NETWORKS`.
    cfg : dataclass
        The kind's architecture config.
    n_marks, n_bins : int
        Input shape.
    **shape
        ``n_cells`` (training cell types of a cell-type-weighted model), ``logits``
        (binary classification: members output logits); ``n_folds`` overrides an
        ensemble config's.

    Returns
    -------
    nn.Module
        Maps ``(n, n_marks, n_bins)`` to ``(n, 1)``.
    """
    return network(kind).build(cfg, n_marks, n_bins, **shape)


def build_model(
    kind: str, cfg, n_marks: int, n_bins: int, mark_dropout: float = 0.0, **shape
) -> Predictor:
    """:func:`build_net` behind a fresh (identity) :class:`InputNormalizer`.

    With ``mark_dropout > 0`` the normaliser masks marks (:mod:`histexpr.models.markmask`)
    and the network takes ``2 * n_marks`` channels.
    """
    norm = InputNormalizer(n_marks, mark_dropout)
    return Predictor(norm, build_net(kind, cfg, norm.n_outputs, n_bins, **shape))
