"""The configs of atlas-ridge and atlas-lightgbm and the check of every atlas kind's fields."""

from __future__ import annotations

from dataclasses import dataclass

from histexpr.errors import ConfigError
from histexpr.estimators.baseline_config import LightGBMConfig

__all__ = ["AtlasLightGBMConfig", "AtlasRidgeConfig", "check_atlas_fields"]


def check_atlas_fields(cfg) -> None:
    """Validate the atlas fields of a config (one-line ConfigError)."""
    if cfg.atlas_values not in ("rpkm", "transformed"):
        raise ConfigError(f"atlas_values must be rpkm or transformed, got {cfg.atlas_values!r}")
    if not cfg.temperature >= 0:
        raise ConfigError(
            f"temperature must be >= 0 (0 = chosen per cell type), got {cfg.temperature}"
        )
    if not 1 <= cfg.pool_bins <= 100:
        raise ConfigError(f"pool_bins must be in 1..100, got {cfg.pool_bins}")
    if cfg.alpha is not None and not cfg.alpha > 0:
        raise ConfigError(f"alpha must be > 0 (or none: chosen by CV), got {cfg.alpha}")
    if not 2 <= cfg.cv_folds <= 20:
        raise ConfigError(f"cv_folds must be in 2..20, got {cfg.cv_folds}")


@dataclass(frozen=True)
class AtlasRidgeConfig:
    """``atlas``: "" (training targets), "roadmap" or a table path; ``atlas_values``:
    rpkm or transformed (tables only); ``atlas_exclude``: cell columns always dropped;
    ``temperature``: softmax temperature of the prior (0 = chosen per cell type);
    ``pool_bins``: bins per mark of the pooled histone profile."""

    alpha: float | None = None
    cv_folds: int = 5
    atlas: str = ""
    atlas_values: str = "rpkm"
    atlas_exclude: tuple[str, ...] = ()
    temperature: float = 0.0
    pool_bins: int = 10

    def __post_init__(self):
        check_atlas_fields(self)


@dataclass(frozen=True)
class AtlasLightGBMConfig(LightGBMConfig, AtlasRidgeConfig):
    """LightGBM fields plus the atlas fields of :class:`AtlasRidgeConfig` (``alpha`` is
    the ridge penalty of the histone score that drives the cell similarity).

    ``max_rows``: each boosted model (histone-only fallback, residual) fits at most this
    many random training rows (0: all). Boosting time grows with the rows; at the seed's
    scale (50 cell types x 16,000 genes = 800,000 rows) the cap keeps a fit within
    minutes on 2 cores, while the atlas features and the prior still use every row."""

    max_rows: int = 150_000

    def __post_init__(self):
        LightGBMConfig.__post_init__(self)
        check_atlas_fields(self)
        if self.max_rows < 0:
            raise ConfigError(f"max_rows must be >= 0 (0: all), got {self.max_rows}")
