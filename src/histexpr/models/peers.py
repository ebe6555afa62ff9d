"""Published models on the same input, re-implemented from the papers' descriptions.

- :class:`DeepChromeCNN`: Singh, Lanchantin, Robins & Qi (2016), "DeepChrome:
  deep-learning for predicting gene expression from histone modifications",
  Bioinformatics 32(17). One convolution (50 filters, width 10), ReLU, max-pool 5,
  dropout 0.5, then fully connected 625 and 125 units and the output.
- :class:`AttentiveChrome`: Singh, Lanchantin, Sekhon & Qi (2017), "Attend and
  predict: understanding gene regulation by selective attention on chromatin",
  NeurIPS. One bidirectional LSTM per mark over the bins with bin-level
  attention summarising each mark, then a bidirectional LSTM over the marks with
  mark-level attention, then a linear output. Attention runs over however many
  bins and marks the input has, so any window and any number of marks work with
  the same layout (the LSTMs and attention vectors do not depend on the length).

Both take normalised input (see :mod:`histexpr.models.normalize`) and output
``(n, 1)``: a value for regression or a logit for classification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from histexpr.errors import ConfigError
from histexpr.models.linear_skip import LinearSkip


@dataclass(frozen=True)
class DeepChromeConfig:
    """Architecture of :class:`DeepChromeCNN` (defaults from the paper)."""

    n_filters: int = 50
    kernel: int = 10
    pool: int = 5
    dropout: float = 0.5
    hidden: tuple[int, ...] = (625, 125)


def deepchrome_pool(cfg: DeepChromeConfig, n_bins: int) -> int:
    """Max-pool width for ``n_bins`` bins: the paper's width scaled with the window.

    ``max(1, round(cfg.pool * n_bins / 100))``, at most the convolution's output
    length, so the pooled length stays near the paper's 18 (91 // 5 at 100 bins):
    15 at 40 bins (pool 2), 19 at 200 (pool 10) and 400 (pool 20), 1 at 10 bins.

    Raises
    ------
    ConfigError
        When ``n_bins`` is shorter than the convolution kernel.
    """
    conv_len = n_bins - cfg.kernel + 1
    if conv_len < 1:
        raise ConfigError(
            f"deepchrome: {n_bins} bins too few for kernel {cfg.kernel} (at least {cfg.kernel})"
        )
    return min(max(1, round(cfg.pool * n_bins / 100)), conv_len)


class DeepChromeCNN(nn.Module):
    """DeepChrome's convolutional network.

    Parameters
    ----------
    cfg : DeepChromeConfig
    n_marks, n_bins : int
        Input shape (any ``n_bins >= cfg.kernel``; the pooling follows
        :func:`deepchrome_pool`, the paper's layout at 100 bins).
    """

    def __init__(
        self, cfg: DeepChromeConfig = DeepChromeConfig(), n_marks: int = 5, n_bins: int = 100
    ):
        super().__init__()
        self.pool = deepchrome_pool(cfg, n_bins)
        pooled = (n_bins - cfg.kernel + 1) // self.pool
        self.features = nn.Sequential(
            nn.Conv1d(n_marks, cfg.n_filters, cfg.kernel),
            nn.ReLU(),
            nn.MaxPool1d(self.pool),
            nn.Dropout(cfg.dropout),
            nn.Flatten(),
        )
        layers: list[nn.Module] = []
        width = cfg.n_filters * pooled
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        x : torch.Tensor, shape (n, n_marks, n_bins)

        Returns
        -------
        torch.Tensor, shape (n, 1)
        """
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class AttentiveChromeConfig:
    """Architecture of :class:`AttentiveChrome` (hidden sizes per LSTM direction).

    ``linear_skip``: regions of the ridge read-out added to the output
    (:mod:`histexpr.models.linear_skip`; fitted before training, regression only); 0: none.
    """

    bin_hidden: int = 32
    mark_hidden: int = 16
    dropout: float = 0.0
    linear_skip: int = 10


class AttentionMaps(NamedTuple):
    """Attention weights of :class:`AttentiveChrome`.

    Attributes
    ----------
    bins : torch.Tensor or np.ndarray, shape (n, n_marks, n_bins)
        Bin-level attention per mark (each row sums to 1).
    marks : torch.Tensor or np.ndarray, shape (n, n_marks)
        Mark-level attention (sums to 1).

    The network returns tensors; :func:`histexpr.explain.attention_maps` returns
    the same type holding numpy arrays (or per-cell means of them).
    """

    bins: Any
    marks: Any


class _Attention(nn.Module):
    """Softmax attention with a learned context vector over a sequence."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1, bias=False)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # h: (n, T, dim) -> summary (n, dim), weights (n, T)
        alpha = torch.softmax(self.score(h)[..., 0], dim=1)
        return torch.einsum("nt,ntd->nd", alpha, h), alpha


class AttentiveChrome(nn.Module):
    """Hierarchical LSTM-attention model of AttentiveChrome.

    Parameters
    ----------
    cfg : AttentiveChromeConfig
    n_marks, n_bins : int
        Input shape.
    """

    def __init__(
        self,
        cfg: AttentiveChromeConfig = AttentiveChromeConfig(),
        n_marks: int = 5,
        n_bins: int = 100,
    ):
        super().__init__()
        self.n_marks = n_marks
        # One encoder per mark, as in the paper: marks have different bin patterns.
        self.bin_lstms = nn.ModuleList(
            nn.LSTM(1, cfg.bin_hidden, batch_first=True, bidirectional=True) for _ in range(n_marks)
        )
        self.bin_attention = nn.ModuleList(_Attention(2 * cfg.bin_hidden) for _ in range(n_marks))
        self.mark_lstm = nn.LSTM(
            2 * cfg.bin_hidden, cfg.mark_hidden, batch_first=True, bidirectional=True
        )
        self.mark_attention = _Attention(2 * cfg.mark_hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(2 * cfg.mark_hidden, 1)
        if cfg.linear_skip < 0:
            raise ConfigError(f"attentivechrome: linear_skip must be >= 0, got {cfg.linear_skip}")
        self.skip = LinearSkip(n_marks, cfg.linear_skip) if cfg.linear_skip else None

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, AttentionMaps]:
        summaries, bin_maps = [], []
        for j in range(self.n_marks):
            h, _ = self.bin_lstms[j](x[:, j, :, None])
            m, alpha = self.bin_attention[j](h)
            summaries.append(m)
            bin_maps.append(alpha)
        s, _ = self.mark_lstm(torch.stack(summaries, dim=1))
        v, beta = self.mark_attention(s)
        out = self.out(self.dropout(v))
        out = out if self.skip is None else out + self.skip(x)
        return out, AttentionMaps(torch.stack(bin_maps, dim=1), beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        x : torch.Tensor, shape (n, n_marks, n_bins)

        Returns
        -------
        torch.Tensor, shape (n, 1)
        """
        return self._run(x)[0]

    def attention(self, x: torch.Tensor) -> AttentionMaps:
        """Bin- and mark-level attention weights for normalised input ``x``."""
        return self._run(x)[1]
