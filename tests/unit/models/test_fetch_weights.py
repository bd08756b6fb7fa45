"""fetch_weights: downloads from a local HTTP server, checks torchvision's hash, writes nothing on failure."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from unit_ablation.models.fetch_weights import (
    expected_hash_prefix,
    fetch_weights,
    main,
    mirrored,
    weights_url,
)


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a folder; yields (base URL, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", folder
    httpd.shutdown()
    httpd.server_close()


def served_file(folder: Path, payload: bytes, stem: str = "net") -> str:
    """Serve `payload` under a torchvision-style name carrying its own SHA-256 prefix."""
    name = f"{stem}-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    (folder / name).write_bytes(payload)
    return name


def test_downloads_and_verifies_the_hash_in_the_file_name(server, tmp_path):
    base, folder = server
    payload = bytes(range(256)) * 5000  # 1.28 MB: more than one read block
    name = served_file(folder, payload)
    output = tmp_path / "resources" / "weights" / "net.pth"
    assert fetch_weights(f"{base}/{name}", output) == output
    assert output.read_bytes() == payload


def test_a_file_that_does_not_match_its_hash_is_refused_and_nothing_is_written(server, tmp_path):
    base, folder = server
    (folder / "net-0123abcd.pth").write_bytes(b"not the file the name promises")
    output = tmp_path / "net.pth"
    with pytest.raises(ValueError, match=r"net-0123abcd\.pth.*does not start with 0123abcd"):
        fetch_weights(f"{base}/net-0123abcd.pth", output)
    assert list(tmp_path.iterdir()) == [folder.parent / "served"]  # no output, no temporary file


def test_missing_file_names_the_url(server, tmp_path):
    base, _ = server
    with pytest.raises(ValueError, match=r"cannot download http://127\.0\.0\.1:\d+/absent-12345678\.pth"):
        fetch_weights(f"{base}/absent-12345678.pth", tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()


def test_a_mirror_serves_torchvisions_file_names(server, tmp_path):
    base, folder = server
    name = served_file(folder, b"weights from the mirror", stem="alexnet-owt")
    official = f"https://download.pytorch.org/models/{name}"
    assert mirrored(official, base + "/") == f"{base}/{name}"
    fetch_weights(official, tmp_path / "alexnet.pth", mirror=base)
    assert (tmp_path / "alexnet.pth").read_bytes() == b"weights from the mirror"


def test_torchvision_weight_enums_name_their_urls():
    url = weights_url("alexnet", "IMAGENET1K_V1")
    assert url.startswith("https://") and expected_hash_prefix(url) == "7be5be79"
    assert expected_hash_prefix("https://example.org/places365/alexnet_places365.pth.tar") is None
    with pytest.raises(ValueError, match="IMAGENET9K.*IMAGENET1K_V1"):
        weights_url("alexnet", "IMAGENET9K")
    with pytest.raises(ValueError, match="no architecture 'alexnett'"):
        weights_url("alexnett", "IMAGENET1K_V1")


def test_command_line_fetches_through_a_mirror(server, tmp_path):
    base, folder = server
    url = weights_url("resnet18", "IMAGENET1K_V1")
    (folder / url.rsplit("/", 1)[-1]).write_bytes(b"a stand-in whose hash cannot match")
    output = tmp_path / "resnet18.pth"
    with pytest.raises(ValueError, match="does not start with"):
        main(["resnet18", "IMAGENET1K_V1", str(output), "--mirror", base])
    assert not output.exists()
