"""The registry of neural networks: one entry per kind, read by every layer.

An entry says everything the other layers need to know about a network kind:

- ``config_cls``: the frozen dataclass of its architecture (JSON round trip,
  ``--set`` overrides);
- ``build(cfg, n_marks, n_bins, **shape) -> nn.Module``: the untrained network
  on normalised input, ``(n, n_marks, n_bins) -> (n, 1)``; ``shape`` holds
  ``n_cells`` (training cell types) and ``logits`` (binary classification) and a
  builder ignores what it does not use;
- ``plan``: how it trains, by name (see :mod:`histexpr.training.members`):
  ``"single"`` (one fit of the whole network), ``"folds"`` (the built network has
  ``member_paths()``: member ``k`` trains outside cell-type fold ``k``) or
  ``"experts"`` (the built network has ``gate_path()`` and ``expert_paths()``: a
  cell-type classifier and one expert per training cell type);
- ``attention``: whether the network has ``attention(x) -> AttentionMaps``.

Adding a network is one :func:`register` call; the estimator layer
(:data:`histexpr.estimators.KINDS`), training and explanations read it from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from histexpr.errors import ConfigError
from histexpr.models.convnet import ConvNet, ConvNetConfig
from histexpr.models.ensemble import CellTypeWeighted, EnsembleConfig, FoldEnsemble
from histexpr.models.peers import (
    AttentiveChrome,
    AttentiveChromeConfig,
    DeepChromeCNN,
    DeepChromeConfig,
)

__all__ = ["NETWORKS", "PLANS", "Network", "network", "register", "unregister"]

#: Member plans that :mod:`histexpr.training.members` knows.
PLANS = ("single", "folds", "experts")


@dataclass(frozen=True)
class Network:
    """One registered network kind (see the module docstring).

    Attributes
    ----------
    name : str
        The kind, e.g. "convnet" (what ``--model`` takes).
    config_cls : type
        Frozen dataclass of the architecture; its defaults build the default model.
    build : callable
        ``build(cfg, n_marks, n_bins, **shape) -> nn.Module``.
    plan : str
        One of :data:`PLANS`.
    attention : bool
        The built network exposes ``attention(x)``.
    description : str
        One line for listings.
    min_genes : int
        Fewest distinct training genes it trains on (below: refused in one line, see
        :func:`histexpr.estimators.check_trainable`).
    """

    name: str
    config_cls: type
    build: Callable[..., nn.Module]
    plan: str
    attention: bool = False
    description: str = ""
    min_genes: int = 10

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"network name must be a non-empty string, got {self.name!r}")
        if not (isinstance(self.config_cls, type) and dataclasses.is_dataclass(self.config_cls)):
            raise ConfigError(f"network {self.name}: config_cls must be a dataclass type")
        if not callable(self.build):
            raise ConfigError(f"network {self.name}: build must be callable")
        if self.plan not in PLANS:
            raise ConfigError(
                f"network {self.name}: plan must be one of {', '.join(PLANS)}, got {self.plan!r}"
            )


#: kind -> its :class:`Network`, in listing order.
NETWORKS: dict[str, Network] = {}


def register(entry: Network, replace: bool = False) -> Network:
    """Add ``entry`` to :data:`NETWORKS` (a taken name is an error unless ``replace``)."""
    if not isinstance(entry, Network):
        raise ConfigError(f"register takes a Network entry, got {type(entry).__name__}")
    if entry.name in NETWORKS and not replace:
        raise ConfigError(f"network kind {entry.name!r} is already registered")
    NETWORKS[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove a kind (tests register throwaway kinds)."""
    NETWORKS.pop(name, None)


def network(kind: str) -> Network:
    """The registry entry of ``kind``; an unknown kind is a one-line error listing the known."""
    try:
        return NETWORKS[kind]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown neural model kind {kind!r}; choose from {', '.join(NETWORKS)}"
        ) from None


def _convnet(cfg, n_marks, n_bins, **_):
    return ConvNet(cfg, n_marks, n_bins)


def _ensemble(cfg, n_marks, n_bins, logits=False, n_folds=None, **_):
    # n_folds: the config's, unless given (older call sites pass it explicitly).
    n_folds = getattr(cfg, "n_folds", 3) if n_folds is None else n_folds
    if n_folds < 2:
        raise ConfigError(f"ensemble: n_folds must be at least 2, got {n_folds}")
    return FoldEnsemble([ConvNet(cfg, n_marks, n_bins) for _ in range(n_folds)], logits)


def _celltype_weighted(cfg, n_marks, n_bins, n_cells=0, logits=False, **_):
    if n_cells < 1:
        raise ConfigError("celltype-weighted: needs at least one training cell type")
    gate = ConvNet(cfg, n_marks, n_bins, n_outputs=n_cells)
    experts = [ConvNet(cfg, n_marks, n_bins) for _ in range(n_cells)]
    return CellTypeWeighted(gate, experts, logits)


def _deepchrome(cfg, n_marks, n_bins, **_):
    return DeepChromeCNN(cfg, n_marks, n_bins)


def _attentivechrome(cfg, n_marks, n_bins, **_):
    return AttentiveChrome(cfg, n_marks, n_bins)


for _entry in (
    Network("convnet", ConvNetConfig, _convnet, "single", description="the seed's ConvNet"),
    Network(
        "ensemble",
        EnsembleConfig,
        _ensemble,
        "folds",
        description="ConvNets trained on cell-type folds, averaged",
    ),
    Network(
        "celltype-weighted",
        ConvNetConfig,
        _celltype_weighted,
        "experts",
        description="per-cell-type experts weighted by a cell-type classifier",
    ),
    Network(
        "deepchrome",
        DeepChromeConfig,
        _deepchrome,
        "single",
        description="DeepChrome (Singh et al. 2016)",
    ),
    Network(
        "attentivechrome",
        AttentiveChromeConfig,
        _attentivechrome,
        "single",
        attention=True,
        description="AttentiveChrome (Singh et al. 2017)",
    ),
):
    register(_entry)
