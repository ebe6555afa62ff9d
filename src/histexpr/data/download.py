"""Download public data sets on request: DeepChrome's binned data, Roadmap RPKM and tagAlign files.

Nothing in histexpr calls this module on its own: files are fetched only when
the user runs ``histexpr download`` (or calls :func:`download`).

Sources
-------
``deepchrome``
    Singh et al. (2016) binned data of 56 REMC cell types, Zenodo record
    2652278: one archive ``data.tar.gz`` holding every cell type;
    ``extract=True`` unpacks the requested cells.
``roadmap-rpkm``
    The Roadmap RNA-seq RPKM matrix of protein-coding genes (57 epigenomes).
``roadmap-tagalign``
    Roadmap consolidated, filtered read alignments ``{EID}-{MARK}.tagAlign.gz``
    (one file per cell type and mark; a few GB per cell type for five marks).

Sizes and MD5 checksums are verified where known. Only the RPKM matrix has
them: measured on a copy whose gzip header (original name
``57epigenomes.RPKM.pc``, 2013-11-25) shows it is the unmodified published
file. For the other files nothing is published that we could check here, so they
are ``None`` and only the HTTP ``Content-Length`` is checked.

Downloads go to ``<name>.part`` and resume from it with an HTTP Range request;
the final name appears only after verification. ``HISTEXPR_DOWNLOAD_BASE``
(or ``base_url``) replaces the server and folder of every URL (mirrors, tests).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tarfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from histexpr._runtime import progress as progress_bar
from histexpr.data.dataset import MARKS, check_mark_names
from histexpr.errors import ConfigError, DataError, HistexprError

SOURCES: tuple[str, ...] = ("deepchrome", "roadmap-rpkm", "roadmap-tagalign")
#: Server and folder of each source; a file's URL is ``{base}/{name}``.
BASE_URLS: dict[str, str] = {
    "deepchrome": "https://zenodo.org/records/2652278/files",
    "roadmap-rpkm": "https://egg2.wustl.edu/roadmap/data/byDataType/rna/expression",
    "roadmap-tagalign": "https://egg2.wustl.edu/roadmap/data/byFileType/alignments/consolidated",
}
ENV_BASE = "HISTEXPR_DOWNLOAD_BASE"
ENV_CACHE = "HISTEXPR_CACHE_DIR"
_CHUNK = 1 << 20
_EID = re.compile(r"^E\d{3}$")


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file.

    Attributes
    ----------
    name : str
        File name, both on the server (under the base URL) and locally.
    url : str
    size : int or None
        Size in bytes, when known.
    md5 : str or None
        Hex MD5 digest, when known.
    """

    name: str
    url: str
    size: int | None = None
    md5: str | None = None


#: Known sizes and checksums by file name (see the module docstring).
KNOWN: dict[str, tuple[int | None, str | None]] = {
    "57epigenomes.RPKM.pc.gz": (2_677_594, "085d57509f8ff634d3f6d296a21ccca2"),
    "data.tar.gz": (None, None),
}


def default_cache_dir() -> Path:
    """``$HISTEXPR_CACHE_DIR`` or ``~/.cache/histexpr``."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "histexpr")


def _cells(cells, source: str) -> list[str]:
    from histexpr.data.reference import DEEPCHROME_CELLS

    if cells is None or (isinstance(cells, str) and cells == "all"):
        return list(DEEPCHROME_CELLS)
    cells = [cells] if isinstance(cells, str) else list(cells)
    bad = [c for c in cells if not _EID.match(c)]
    if bad:
        raise ConfigError(f"{source}: not an epigenome id (E001..E129): {', '.join(bad)}")
    return cells


def catalogue(
    source: str,
    cells: Sequence[str] | str | None = None,
    marks: Sequence[str] = MARKS,
    base_url: str | None = None,
) -> list[RemoteFile]:
    """The files of a source.

    Parameters
    ----------
    source : {"deepchrome", "roadmap-rpkm", "roadmap-tagalign"}
    cells : sequence of str or "all"
        Epigenome ids; required for ``roadmap-tagalign`` (``"all"``: the 56
        DeepChrome cells); ignored by the single-file sources.
    marks : sequence of str
        Marks of the tagAlign files (default the five core marks; any name matching
        :data:`histexpr.data.dataset.MARK_PATTERN`, e.g. ``H3K27ac``, ``H3K9ac``, ``DNase``:
        the names ``featurize`` accepts).
    base_url : str, optional
        Replaces :data:`BASE_URLS` (default ``$HISTEXPR_DOWNLOAD_BASE`` when set).
    """
    if source not in SOURCES:
        raise ConfigError(f"unknown download source {source!r}; choose from {', '.join(SOURCES)}")
    base = (base_url or os.environ.get(ENV_BASE) or BASE_URLS[source]).rstrip("/")
    if source == "deepchrome":
        names = ["data.tar.gz"]
    elif source == "roadmap-rpkm":
        names = ["57epigenomes.RPKM.pc.gz"]
    else:
        if cells is None:
            raise ConfigError(
                "roadmap-tagalign: give the cell types to fetch (--cells E003,E004 or 'all'); "
                "each is several GB"
            )
        # The same names featurize accepts (data.dataset.MARK_PATTERN), e.g. H3K27ac, DNase.
        marks = check_mark_names(marks)
        names = [f"{c}-{m}.tagAlign.gz" for c in _cells(cells, source) for m in marks]
    return [RemoteFile(n, f"{base}/{n}", *KNOWN.get(n, (None, None))) for n in names]


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _verify(remote: RemoteFile, path: Path) -> str | None:
    """None when ``path`` matches the known size and checksum, else the problem."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        return f"size {size} bytes, expected {remote.size}"
    if remote.md5 is not None and _md5(path) != remote.md5:
        return f"MD5 checksum mismatch (expected {remote.md5})"
    return None


def download_file(
    remote: RemoteFile, dest, timeout: float = 30.0, progress: bool = True, force: bool = False
) -> Path:
    """Fetch one file into the folder ``dest``, resuming a previous ``.part``.

    Returns
    -------
    Path
        The verified file. An existing complete file is not fetched again.

    Raises
    ------
    HistexprError
        Server unreachable, HTTP error, truncated transfer (the ``.part`` is kept
        for resuming), failed verification (the ``.part`` is removed), or a file of
        the same name that is not the verified file, without ``force`` (it is
        replaced only with ``force``).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / remote.name
    if final.exists():
        problem = _verify(remote, final) if final.is_file() else "not a file"
        if problem is None:
            return final
        if not force or not final.is_file():
            raise HistexprError(
                f"{final}: exists and is not the verified {remote.name} ({problem}); "
                "refusing to replace it (use --force to fetch it again)"
            )
    part = dest / (remote.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(remote.url, headers={"User-Agent": "histexpr"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            response = None  # the .part already holds the whole file
        else:
            raise HistexprError(f"{remote.url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HistexprError(
            f"cannot reach {remote.url} ({reason}); check the network connection "
            f"or set {ENV_BASE} to a mirror"
        ) from None
    if response is not None:
        with response:
            if offset and response.status != 206:
                offset = 0  # the server ignored the Range header: start over
            length = response.headers.get("Content-Length")
            expected = None if length is None else offset + int(length)
            _stream(response, part, offset, expected or remote.size, remote.name, progress)
        got = part.stat().st_size
        if expected is not None and got < expected:
            raise HistexprError(
                f"{remote.url}: transfer interrupted after {got} of {expected} bytes; "
                "run the command again to resume"
            )
    problem = _verify(remote, part)
    if problem:
        part.unlink()
        raise HistexprError(f"{remote.url}: downloaded file rejected: {problem}")
    os.replace(part, final)
    return final


def _stream(response, part: Path, offset: int, total, label: str, progress: bool) -> None:
    with (
        open(part, "ab" if offset else "wb") as fh,
        progress_bar(total, label, "B", progress, initial=offset, unit_scale=True) as bar,
    ):
        while True:
            try:
                block = response.read(_CHUNK)
            except http.client.IncompleteRead as exc:
                # Connection dropped: keep what arrived; the caller reports the shortfall.
                fh.write(exc.partial)
                bar.update(len(exc.partial))
                break
            except (OSError, http.client.HTTPException):
                break
            if not block:
                break
            fh.write(block)
            bar.update(len(block))


def extract_deepchrome(archive, cells: Sequence[str], dest) -> list[Path]:
    """Unpack the members of the given cell types from DeepChrome's ``data.tar.gz``.

    A member belongs to a cell when one of its path components is the cell id
    (e.g. ``data/E003/classification/train.csv``).

    Returns
    -------
    list of Path
        Extracted files.
    """
    dest = Path(dest)
    wanted = set(cells)
    out = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = [
                m for m in tar.getmembers() if m.isfile() and wanted & set(Path(m.name).parts)
            ]
            found = {p for m in members for p in Path(m.name).parts} & wanted
            if wanted - found:
                raise DataError(
                    f"no data for cell type(s) {', '.join(sorted(wanted - found))}", archive
                )
            tar.extractall(dest, members=members, filter="data")
            out = [dest / m.name for m in members]
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"cannot unpack archive ({exc})", archive) from None
    return out


def download(
    source: str,
    cells: Sequence[str] | str | None = None,
    dest=None,
    marks: Sequence[str] = MARKS,
    base_url: str | None = None,
    extract: bool = False,
    timeout: float = 30.0,
    progress: bool = True,
    dry_run: bool = False,
    force: bool = False,
) -> list[Path]:
    """Download a source's files (see the module docstring).

    Parameters
    ----------
    source : {"deepchrome", "roadmap-rpkm", "roadmap-tagalign"}
    cells : sequence of str or "all", optional
        Cell types (tagAlign files; cells to unpack with ``extract``).
    dest : str or PathLike, optional
        Target folder (default ``<cache dir>/<source>``, see :func:`default_cache_dir`).
    marks : sequence of str
        Marks of the tagAlign files (default the five core marks; any name matching
        :data:`histexpr.data.dataset.MARK_PATTERN`, e.g. ``H3K27ac``, ``H3K9ac``, ``DNase``:
        the names ``featurize`` accepts).
    base_url : str, optional
        Mirror or test server replacing the public base URL.
    extract : bool
        Unpack the requested cells from the DeepChrome archive into ``dest``.
    timeout : float
        Seconds to wait for the server.
    progress : bool
        Show a byte progress bar per file.
    dry_run : bool
        Return the target paths without fetching anything.
    force : bool
        Fetch again a file whose name is taken by one that fails verification
        (without it, such a file is refused, never replaced).

    Returns
    -------
    list of Path
        The downloaded (or, with ``dry_run``, planned) files.
    """
    files = catalogue(source, cells, marks, base_url)
    dest = Path(dest) if dest is not None else default_cache_dir() / source
    if dry_run:
        return [dest / f.name for f in files]
    paths = [download_file(f, dest, timeout, progress, force) for f in files]
    if source == "deepchrome" and extract:
        return extract_deepchrome(paths[0], _cells(cells, source), dest)
    return paths
