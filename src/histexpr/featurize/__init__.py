"""From raw ChIP-seq tracks (bigWig, BAM, tagAlign) to a histexpr dataset.

See ``docs/featurize.md`` for the coordinate conventions, the counting
semantics and the end-to-end recipe. pyBigWig, pysam and dask are optional
(the ``featurize`` extra) and imported only when used.
"""

from histexpr.featurize.annotation import (
    TssTable,
    Window,
    read_gtf,
    read_tss,
    tss_from_frame,
    window_bounds,
)
from histexpr.featurize.bigwig import bigwig_chroms, bin_bigwig
from histexpr.featurize.pipeline import (
    featurize,
    featurize_track,
    parse_mark_specs,
    read_expression,
    read_manifest,
    track_kind,
)
from histexpr.featurize.reads import ReadCountOptions, count_bam, count_tagalign

__all__ = [
    "ReadCountOptions",
    "TssTable",
    "Window",
    "bigwig_chroms",
    "bin_bigwig",
    "count_bam",
    "count_tagalign",
    "featurize",
    "featurize_track",
    "parse_mark_specs",
    "read_expression",
    "read_gtf",
    "read_manifest",
    "read_tss",
    "track_kind",
    "tss_from_frame",
    "window_bounds",
]
