"""Fetching: the GroupLens-zip downloader against a loopback HTTP server, and the real ml-100k fetch."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from movierec.cli import main as cli_main
from movierec.trainer.data import (
    DataError,
    NetworkError,
    dataset_split_files,
    fetch_dataset,
    load_catalog,
    load_ratings,
)
from movierec.trainer.data.ml100k import UDATA_SHA256

ML1M_FILES = {
    "ml-1m/ratings.dat": "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298709\n",
    "ml-1m/movies.dat": "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::Animation\n",
    "ml-1m/users.dat": "1::F::1::10::48067\n2::M::56::16::70072\n",
}


def _zip_bytes(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text.encode("latin-1"))
    return buf.getvalue()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server on a free port serving files from a folder; yields (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


def test_fetch_zip_progress_atomic_and_idempotent(
    server: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, root = server
    (root / "ml-1m.zip").write_bytes(_zip_bytes(ML1M_FILES))
    dest = tmp_path / "data"
    folder = fetch_dataset("ml-1m", dest, url=f"{base}/ml-1m.zip")
    assert folder == dest / "ml-1m"
    assert _leftovers(dest) == ["ml-1m"]  # no staging folder or archive left behind
    assert sorted(p.name for p in folder.iterdir()) == ["movies.dat", "ratings.dat", "users.dat"]
    assert load_ratings(folder / "ratings.dat")["item"].tolist() == [1193, 661, 1193]
    assert load_catalog(folder / "movies.dat")["year"].tolist() == [1975, 1996]
    err = capsys.readouterr().err
    assert "downloading" in err and "ready in" in err
    mtime = (folder / "ratings.dat").stat().st_mtime_ns
    (root / "ml-1m.zip").unlink()  # a second fetch must not even ask the server
    assert fetch_dataset("ml-1m", dest, url=f"{base}/ml-1m.zip") == folder
    assert "already present" in capsys.readouterr().err
    assert (folder / "ratings.dat").stat().st_mtime_ns == mtime


def test_fetch_zip_without_top_folder_and_quiet(server: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, root = server
    (root / "flat.zip").write_bytes(_zip_bytes({k.split("/")[1]: v for k, v in ML1M_FILES.items()}))
    folder = fetch_dataset("ml-1m", tmp_path, progress=False, url=f"{base}/flat.zip")
    assert (folder / "users.dat").is_file()
    assert capsys.readouterr().err == ""


def test_corrupted_zip_leaves_nothing(server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = server
    good = _zip_bytes(ML1M_FILES)
    (root / "bad.zip").write_bytes(good[: len(good) // 2])
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="corrupted zip"):
        fetch_dataset("ml-1m", dest, progress=False, url=f"{base}/bad.zip")
    assert _leftovers(dest) == []
    flipped = bytearray(good)
    flipped[40] ^= 0xFF  # inside the first member's compressed data: CRC check fails
    (root / "crc.zip").write_bytes(bytes(flipped))
    with pytest.raises(DataError):
        fetch_dataset("ml-1m", dest, progress=False, url=f"{base}/crc.zip")
    assert _leftovers(dest) == []


def test_archive_missing_files_and_http_errors(server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = server
    (root / "partial.zip").write_bytes(_zip_bytes({"ml-1m/ratings.dat": ML1M_FILES["ml-1m/ratings.dat"]}))
    with pytest.raises(DataError, match="lacks movies.dat, users.dat"):
        fetch_dataset("ml-1m", tmp_path, progress=False, url=f"{base}/partial.zip")
    with pytest.raises(DataError, match="HTTP 404"):
        fetch_dataset("ml-1m", tmp_path, progress=False, url=f"{base}/missing.zip")
    assert _leftovers(tmp_path) == ["www"]


def test_checksum_and_size_checks(server: tuple[str, Path], tmp_path: Path) -> None:
    from movierec.trainer.data.download import download

    base, root = server
    payload = _zip_bytes(ML1M_FILES)
    (root / "a.zip").write_bytes(payload)
    target = tmp_path / "a.zip"
    assert download(f"{base}/a.zip", target, sha256=hashlib.sha256(payload).hexdigest(), size=len(payload), progress=False)
    with pytest.raises(DataError, match="sha256"):
        download(f"{base}/a.zip", target, sha256="0" * 64, progress=False)
    assert not target.exists()
    with pytest.raises(DataError, match="bytes, expected 1$"):
        download(f"{base}/a.zip", target, size=1, progress=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_offline_is_one_line_network_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/ml-1m.zip"
    with pytest.raises(NetworkError) as info:
        fetch_dataset("ml-1m", tmp_path / "d", progress=False, url=url)
    assert "\n" not in str(info.value) and "cannot download" in str(info.value)
    assert _leftovers(tmp_path / "d") == []
    assert cli_main(["data", "fetch", "ml-1m", "--dest", str(tmp_path / "d"), "--url", url, "--quiet"]) == 2
    assert "error: cannot download" in capsys.readouterr().err


def test_incomplete_existing_folder_is_not_touched(tmp_path: Path) -> None:
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "ratings.dat").write_text("mine\n")
    with pytest.raises(DataError, match="not a complete copy"):
        fetch_dataset("ml-1m", tmp_path, progress=False, url="http://127.0.0.1:1/x.zip")
    assert (tmp_path / "ml-1m" / "ratings.dat").read_text() == "mine\n"


def test_real_ml100k_fetch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Calls `pip download recbole==1.2.1`; skipped only when pip cannot reach the package index."""
    try:
        folder = fetch_dataset("ml-100k", tmp_path)
    except NetworkError as exc:
        pytest.skip(f"package index unreachable: {exc}")
    assert _leftovers(tmp_path) == ["ml-100k"]
    assert hashlib.sha256((folder / "u.data").read_bytes()).hexdigest() == UDATA_SHA256
    test1 = (folder / "u1.test").read_text().splitlines()
    assert test1[0] == "1\t6\t5\t887431973"
    assert len(test1) == 20_000
    assert len((folder / "u1.base").read_text().splitlines()) == 80_000
    for i in range(1, 6):
        files = dataset_split_files("ml-100k", tmp_path, f"u{i}")
        assert len(load_ratings(files.train)) + len(load_ratings(files.test)) == 100_000
    catalog = load_catalog(folder / "u.item")
    assert len(catalog) == 1682 and catalog["title"].iloc[0] == "Toy Story (1995)"
    assert (folder / "u.user").read_text().splitlines()[0] == "1|24|M|technician|85711"
    capsys.readouterr()
    assert cli_main(["data", "fetch", "ml-100k", "--dest", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(folder) and "already present" in captured.err
    assert cli_main(["data", "info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "users:   943" in out and "movies:  1682" in out and "ratings: 100000" in out and "34174" in out
