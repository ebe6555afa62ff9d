"""Explanations of a trained model: input attributions and attention maps.

- :mod:`histexpr.explain.attribution`: saliency, input x gradient and integrated
  gradients under one contract, per-cell-type means, their ``.npz`` files;
- :mod:`histexpr.explain.attention`: attention weights of models that have them
  (the only extraction path).

Explaining a whole run or model directory (files, figures) is a workflow:
:func:`histexpr.workflows.explain.explain_run`.
"""

from histexpr.explain.attention import AttentionMaps, AttentionModel, attention_maps, has_attention
from histexpr.explain.attribution import (
    METHODS,
    CellAttributions,
    ExplainResult,
    GeneAttributions,
    attribute,
    check_steps,
    load_attributions,
    load_gene_attributions,
    mean_attribution_by_cell,
    sample_rows,
    save_attributions,
    save_gene_attributions,
)

__all__ = [
    "METHODS",
    "AttentionMaps",
    "AttentionModel",
    "CellAttributions",
    "ExplainResult",
    "GeneAttributions",
    "attention_maps",
    "attribute",
    "check_steps",
    "has_attention",
    "load_attributions",
    "load_gene_attributions",
    "mean_attribution_by_cell",
    "sample_rows",
    "save_attributions",
    "save_gene_attributions",
]
