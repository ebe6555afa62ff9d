"""Files exactly as deepTools 3.5 writes them, for the tests (deepTools is not installed).

``write_gz``: ``computeMatrix reference-point -out`` (heatmapper.save_matrix);
``write_text``: ``--outFileNameMatrix`` (save_matrix_values) plus the
``--outFileSortedRegions`` BED beside it (save_BED): header line(s) included,
``%f`` / ``%.4g`` values, ``nan`` for bins without data.
"""

from __future__ import annotations

import gzip
import json

import numpy as np

GENES = ["ENSG00000000003", "ENSG00000000005", "ENSG00000000419", "ENSG00000000457"]
STRANDS = ["-", "+", "-", "+"]


def _params(labels, n_bins, n_regions, up=200, down=200, size=100, body=0, ref="TSS"):
    """The parameter dict of computeMatrix reference-point, in deepTools 3.5's key order."""
    n = len(labels)
    return {
        "upstream": [up] * n,
        "downstream": [down] * n,
        "body": [body] * n,
        "bin size": [size] * n,
        "ref point": [ref] * n,
        "verbose": False,
        "bin avg type": "mean",
        "missing data as zero": False,
        "min threshold": None,
        "max threshold": None,
        "scale": 1,
        "skip zeros": False,
        "nan after end": False,
        "proc number": 1,
        "sort regions": "keep",
        "sort using": "mean",
        "unscaled 5 prime": [0] * n,
        "unscaled 3 prime": [0] * n,
        "group_labels": ["genes.bed"],
        "group_boundaries": [0, n_regions],
        "sample_labels": list(labels),
        "sample_boundaries": [i * n_bins for i in range(n + 1)],
    }


def write_gz(path, samples: dict, genes=GENES, strands=STRANDS, **layout):
    """``computeMatrix reference-point -out path``: samples = {label: (n_regions, n_bins)}."""
    first = next(iter(samples.values()))
    params = _params(list(samples), first.shape[1], len(genes), **layout)
    matrix = np.concatenate(list(samples.values()), axis=1)
    with gzip.open(path, "wb") as fh:
        fh.write(("@" + json.dumps(params, separators=(",", ":")) + "\n").encode())
        for i, (g, s) in enumerate(zip(genes, strands, strict=True)):
            values = "\t".join(np.char.mod("%f", matrix[i, :]))
            row = f"chr1\t{1000 * (i + 1)}\t{1000 * (i + 1) + 1}\t{g}\t.\t{s}\t{values}\n"
            fh.write(row.encode())
    return path


def write_text(path, samples: dict, genes=GENES, strands=STRANDS, up=200, down=200, size=100):
    """``--outFileNameMatrix path`` plus ``--outFileSortedRegions`` (path with .bed)."""
    first = next(iter(samples.values()))
    n = len(samples)
    info = [f"genes.bed:{len(genes)}"]
    with open(path, "w") as fh:
        fh.write("#{}\n".format("\t".join(info)))
        fh.write(
            f"#downstream:{[down] * n}\tupstream:{[up] * n}\tbody:{[0] * n}\tbin size:"
            f"{[size] * n}\tunscaled 5 prime:{[0] * n}\tunscaled 3 prime:{[0] * n}\n"
        )
        for label in samples:
            info.extend([label] * first.shape[1])
        fh.write("{}\n".format("\t".join(info)))
    with open(path, "a") as fh:
        np.savetxt(fh, np.concatenate(list(samples.values()), axis=1), fmt="%.4g", delimiter="\t")
    with open(path.with_suffix(".bed"), "w") as fh:
        fh.write(
            "#chrom\tstart\tend\tname\tscore\tstrand\tthickStart\tthickEnd\titemRGB\t"
            "blockCount\tblockSizes\tblockStart\tdeepTools_group\n"
        )
        for i, (g, s) in enumerate(zip(genes, strands, strict=True)):
            a, b = 1000 * (i + 1), 1000 * (i + 1) + 1
            fh.write(f"chr1\t{a}\t{b}\t{g}\t.\t{s}\t{a}\t{b}\t0\t1\t1\t0\tgenes.bed\n")
    return path
