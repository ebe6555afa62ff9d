"""`download` against a loopback HTTP server on 127.0.0.1 serving fixtures (no network)."""

import gzip
import hashlib
import io
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import SHARED_DATA
from histexpr.data.download import (
    BASE_URLS,
    RemoteFile,
    catalogue,
    download,
    download_file,
)
from histexpr.errors import ConfigError, DataError, HistexprError

RPKM = SHARED_DATA / "roadmap" / "57epigenomes.RPKM.pc.gz"
PAYLOAD = bytes(range(256)) * 4000  # 1 MB of known content


class Handler(BaseHTTPRequestHandler):
    """``/<mode>/<name>``: mode ``good`` (Range aware), ``trunc`` (drops half the body),
    ``norange`` (ignores Range)."""

    def do_GET(self):
        mode, _, name = self.path.lstrip("/").partition("/")
        rng = self.headers.get("Range")
        self.server.log.append((mode, name, rng))
        data = self.server.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if rng and mode != "norange":
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "trunc" else body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files, httpd.log = {"payload.bin": PAYLOAD}, []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_catalogue_uses_the_public_urls(monkeypatch):
    monkeypatch.delenv("HISTEXPR_DOWNLOAD_BASE", raising=False)
    (rpkm,) = catalogue("roadmap-rpkm")
    assert rpkm.url == (
        "https://egg2.wustl.edu/roadmap/data/byDataType/rna/expression/57epigenomes.RPKM.pc.gz"
    )
    assert rpkm.size == 2_677_594 and len(rpkm.md5) == 32
    (dc,) = catalogue("deepchrome")
    assert dc.url.startswith("https://zenodo.org/records/2652278/") and dc.md5 is None
    files = catalogue("roadmap-tagalign", cells=["E003"], marks=["H3K4me3"])
    assert [f.url for f in files] == [
        "https://egg2.wustl.edu/roadmap/data/byFileType/alignments/consolidated/E003-H3K4me3.tagAlign.gz"
    ]
    assert len(catalogue("roadmap-tagalign", cells="all")) == 56 * 5
    with pytest.raises(ConfigError, match="give the cell types"):
        catalogue("roadmap-tagalign")
    with pytest.raises(ConfigError, match="not an epigenome id"):
        catalogue("roadmap-tagalign", cells=["H1"])
    with pytest.raises(ConfigError, match="unknown download source"):
        catalogue("encode")
    monkeypatch.setenv("HISTEXPR_DOWNLOAD_BASE", "http://127.0.0.1:9/mirror/")
    assert catalogue("roadmap-rpkm")[0].url == "http://127.0.0.1:9/mirror/57epigenomes.RPKM.pc.gz"
    assert set(BASE_URLS) == {"deepchrome", "roadmap-rpkm", "roadmap-tagalign"}


@pytest.mark.skipif(not RPKM.exists(), reason=f"real RPKM matrix not available at {RPKM}")
def test_real_rpkm_file_passes_the_published_size_and_checksum(server, tmp_path):
    data = RPKM.read_bytes()
    server.files["57epigenomes.RPKM.pc.gz"] = data
    (path,) = download("roadmap-rpkm", dest=tmp_path, base_url=f"{server.url}/good", progress=False)
    assert path.read_bytes() == data
    assert gzip.decompress(data).startswith(b"gene_id")
    # A complete, verified file is not fetched again (the cache).
    n = len(server.log)
    download("roadmap-rpkm", dest=tmp_path, base_url=f"{server.url}/good", progress=False)
    assert len(server.log) == n


def test_size_and_checksum_mismatches_are_rejected(server, tmp_path):
    server.files["57epigenomes.RPKM.pc.gz"] = b"not the matrix"
    with pytest.raises(HistexprError, match="size 14 bytes, expected 2677594"):
        download("roadmap-rpkm", dest=tmp_path, base_url=f"{server.url}/good", progress=False)
    assert list(tmp_path.iterdir()) == []
    corrupted = bytearray(PAYLOAD)
    corrupted[1000] ^= 0xFF
    server.files["payload.bin"] = bytes(corrupted)
    remote = RemoteFile("payload.bin", f"{server.url}/good/payload.bin", len(PAYLOAD), md5(PAYLOAD))
    with pytest.raises(HistexprError, match="MD5 checksum mismatch"):
        download_file(remote, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_truncated_transfer_is_kept_and_resumed(server, tmp_path):
    trunc = RemoteFile("payload.bin", f"{server.url}/trunc/payload.bin", None, md5(PAYLOAD))
    with pytest.raises(HistexprError, match=r"interrupted after \d+ of 1024000 bytes"):
        download_file(trunc, tmp_path, progress=False)
    part = tmp_path / "payload.bin.part"
    half = part.stat().st_size
    assert 0 < half < len(PAYLOAD) and not (tmp_path / "payload.bin").exists()
    good = RemoteFile("payload.bin", f"{server.url}/good/payload.bin", None, md5(PAYLOAD))
    path = download_file(good, tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD and not part.exists()
    assert server.log[-1] == ("good", "payload.bin", f"bytes={half}-")


def test_server_ignoring_range_restarts_the_file(server, tmp_path):
    (tmp_path / "payload.bin.part").write_bytes(b"stale bytes")
    remote = RemoteFile(
        "payload.bin", f"{server.url}/norange/payload.bin", len(PAYLOAD), md5(PAYLOAD)
    )
    assert download_file(remote, tmp_path, progress=False).read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_without_new_bytes(server, tmp_path):
    (tmp_path / "payload.bin.part").write_bytes(PAYLOAD)
    remote = RemoteFile("payload.bin", f"{server.url}/good/payload.bin", len(PAYLOAD), md5(PAYLOAD))
    assert download_file(remote, tmp_path, progress=False).read_bytes() == PAYLOAD
    assert server.log == [("good", "payload.bin", f"bytes={len(PAYLOAD)}-")]


def test_offline_and_http_errors_are_one_line(server, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(HistexprError, match="cannot reach") as exc:
        download(
            "roadmap-rpkm",
            dest=tmp_path,
            base_url=f"http://127.0.0.1:{closed_port}",
            progress=False,
        )
    assert "\n" not in str(exc.value)
    with pytest.raises(HistexprError, match="HTTP 404"):
        download_file(RemoteFile("x", f"{server.url}/good/missing"), tmp_path, progress=False)


def test_dry_run_and_cache_dir_touch_nothing(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HISTEXPR_CACHE_DIR", str(tmp_path / "cache"))
    paths = download("roadmap-tagalign", cells=["E003"], base_url=server.url, dry_run=True)
    assert paths[0] == tmp_path / "cache" / "roadmap-tagalign" / "E003-H3K27me3.tagAlign.gz"
    assert len(paths) == 5 and server.log == [] and not (tmp_path / "cache").exists()


def test_deepchrome_archive_is_downloaded_and_cells_extracted(server, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for cell in ("E003", "E004"):
            for split in ("train", "valid", "test"):
                row = f"{cell}1,1,0,1,2,3,4,1\n".encode()
                info = tarfile.TarInfo(f"data/{cell}/classification/{split}.csv")
                info.size = len(row)
                tar.addfile(info, io.BytesIO(row))
    server.files["data.tar.gz"] = buf.getvalue()
    files = download(
        "deepchrome",
        cells=["E004"],
        dest=tmp_path,
        base_url=f"{server.url}/good",
        extract=True,
        progress=False,
    )
    assert sorted(p.name for p in files) == ["test.csv", "train.csv", "valid.csv"]
    assert all(p.read_text().startswith("E0041,") for p in files)
    assert not (tmp_path / "data" / "E003").exists()
    with pytest.raises(DataError, match="no data for cell type"):
        download(
            "deepchrome", cells=["E999"], dest=tmp_path, base_url=f"{server.url}/good", extract=True
        )
