"""Neural models: pure ``nn.Module`` s and the configs that build them.

Every neural kind is a :class:`~histexpr.models.normalize.Predictor`: the input
normaliser followed by a network (:func:`build_net`). Training lives in
:mod:`histexpr.estimators.neural`; baselines in :mod:`histexpr.estimators.baselines` (not
imported here, so importing the models does not pull in scikit-learn).
"""

from __future__ import annotations

from torch import nn

from histexpr.errors import ConfigError
from histexpr.models.convnet import ConvNet, ConvNetConfig, conv_lengths
from histexpr.models.ensemble import CellTypeWeighted, FoldEnsemble
from histexpr.models.normalize import InputNormalizer, NormStats, Predictor, norm_stats
from histexpr.models.peers import (
    AttentionMaps,
    AttentiveChrome,
    AttentiveChromeConfig,
    DeepChromeCNN,
    DeepChromeConfig,
)

__all__ = [
    "MODEL_CONFIGS",
    "AttentionMaps",
    "AttentiveChrome",
    "AttentiveChromeConfig",
    "CellTypeWeighted",
    "ConvNet",
    "ConvNetConfig",
    "DeepChromeCNN",
    "DeepChromeConfig",
    "FoldEnsemble",
    "InputNormalizer",
    "NormStats",
    "Predictor",
    "build_model",
    "build_net",
    "conv_lengths",
    "norm_stats",
]

#: Neural kind -> the frozen dataclass describing its architecture.
MODEL_CONFIGS: dict[str, type] = {
    "convnet": ConvNetConfig,
    "ensemble": ConvNetConfig,
    "celltype-weighted": ConvNetConfig,
    "deepchrome": DeepChromeConfig,
    "attentivechrome": AttentiveChromeConfig,
}


def build_net(
    kind: str,
    cfg,
    n_marks: int,
    n_bins: int,
    n_folds: int = 3,
    n_cells: int = 0,
    logits: bool = False,
) -> nn.Module:
    """The untrained network of ``kind`` (input: normalised signal).

    Parameters
    ----------
    kind : str
        One of :data:`MODEL_CONFIGS`.
    cfg : dataclass
        The kind's architecture config.
    n_marks, n_bins : int
        Input shape.
    n_folds : int
        Members of a fold ensemble.
    n_cells : int
        Training cell types of a cell-type-weighted model (gate classes, experts).
    logits : bool
        The task is binary classification (members output logits).

    Returns
    -------
    nn.Module
        Maps ``(n, n_marks, n_bins)`` to ``(n, 1)``.
    """
    if kind == "convnet":
        return ConvNet(cfg, n_marks, n_bins)
    if kind == "ensemble":
        if n_folds < 2:
            raise ConfigError(f"ensemble: n_folds must be at least 2, got {n_folds}")
        return FoldEnsemble([ConvNet(cfg, n_marks, n_bins) for _ in range(n_folds)], logits)
    if kind == "celltype-weighted":
        if n_cells < 1:
            raise ConfigError("celltype-weighted: needs at least one training cell type")
        gate = ConvNet(cfg, n_marks, n_bins, n_outputs=n_cells)
        experts = [ConvNet(cfg, n_marks, n_bins) for _ in range(n_cells)]
        return CellTypeWeighted(gate, experts, logits)
    if kind == "deepchrome":
        return DeepChromeCNN(cfg, n_marks, n_bins)
    if kind == "attentivechrome":
        return AttentiveChrome(cfg, n_marks, n_bins)
    raise ConfigError(f"unknown neural model kind {kind!r}; choose from {', '.join(MODEL_CONFIGS)}")


def build_model(kind: str, cfg, n_marks: int, n_bins: int, **kwargs) -> Predictor:
    """:func:`build_net` behind a fresh (identity) :class:`InputNormalizer`."""
    return Predictor(InputNormalizer(n_marks), build_net(kind, cfg, n_marks, n_bins, **kwargs))
