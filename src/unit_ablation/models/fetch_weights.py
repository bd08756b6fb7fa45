"""Download torchvision's pretrained weights once, on the submit host, into a local file.

Compute nodes are often offline, so no job downloads at run time: the workflow's `fetch_weights`
local rule calls `fetch_weights` before any job needs the file, and every job loads the local copy.

    python -m unit_ablation.fetch_weights vgg16 IMAGENET1K_V1 resources/weights/vgg16-IMAGENET1K_V1.pth
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import urllib.error
import urllib.request
from pathlib import Path

from unit_ablation.files.writing import atomic_path
from unit_ablation.runtime.progress import Progress

log = logging.getLogger(__name__)
# torchvision's file names end in the first hex digits of the file's SHA-256: name-<hash>.pth
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.(?:pth|pt)$")
_CHUNK = 1 << 20


def weights_url(arch: str, weights: str) -> str:
    """The download URL of a torchvision weight enum member, e.g. ("vgg16", "IMAGENET1K_V1")."""
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(arch)
    except ValueError as error:
        raise ValueError(f"torchvision has no architecture {arch!r}: {error}") from error
    try:
        return enum[weights].url
    except KeyError as error:
        available = ", ".join(member.name for member in enum)
        raise ValueError(f"{arch} has no weights {weights!r}; torchvision has: {available}") from error


def expected_hash_prefix(url: str) -> str | None:
    """The SHA-256 prefix that torchvision puts in its file names, or None when the name has none."""
    match = _HASH_IN_NAME.search(url.rsplit("/", 1)[-1])
    return match.group(1) if match else None


def mirrored(url: str, mirror: str | None) -> str:
    """The same file name under `mirror` (a base URL), or `url` itself without a mirror."""
    if not mirror:
        return url
    return f"{mirror.rstrip('/')}/{url.rsplit('/', 1)[-1]}"


def fetch_weights(url: str, output: str | Path, mirror: str | None = None, timeout: float = 60.0) -> Path:
    """Download `url` (or its file under `mirror`) to `output`, checking torchvision's hash prefix.

    The file appears under its final name only when complete and verified; on any failure nothing
    is left behind and the error names the URL.
    """
    source = mirrored(url, mirror)
    prefix = expected_hash_prefix(url)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(source, timeout=timeout) as response, atomic_path(output) as tmp:
            size = int(response.headers.get("Content-Length") or 0)
            progress = Progress(log, f"download {source}", size, "bytes") if size else None
            with open(tmp, "wb") as handle:
                while block := response.read(_CHUNK):
                    handle.write(block)
                    digest.update(block)
                    if progress:
                        progress.update(len(block))
            if prefix and not digest.hexdigest().startswith(prefix):
                raise ValueError(
                    f"{source}: SHA-256 {digest.hexdigest()[:16]}... does not start with {prefix},"
                    " the hash in torchvision's file name (a corrupt or different file)"
                )
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        raise ValueError(f"cannot download {source}: {error}") from error
    log.info("wrote %s (%s, sha256 %s)", output, source, digest.hexdigest()[:16])
    return Path(output)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch", help="torchvision architecture, e.g. vgg16")
    parser.add_argument("weights", help="weight enum member, e.g. IMAGENET1K_V1")
    parser.add_argument("output", type=Path)
    parser.add_argument("--mirror", help="base URL that serves torchvision's file names")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fetch_weights(weights_url(args.arch, args.weights), args.output, mirror=args.mirror)


if __name__ == "__main__":
    main()
