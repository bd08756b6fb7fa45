import pytest

from unit_ablation.data.fetch import DataUnavailable, fetch_fashion_mnist
from unit_ablation.spec.fashion_mnist import IDX_NAMES


def test_existing_files_are_used_without_installing(tmp_path):
    debian = tmp_path / "debian"
    debian.mkdir()
    for name in IDX_NAMES:
        (debian / name).write_bytes(b"x")

    def must_not_run():
        raise AssertionError("installer called although the data is there")

    assert fetch_fashion_mnist(tmp_path / "dest", debian, [("x", must_not_run)]) == debian


def test_fallback_installer_provides_the_data(tmp_path):
    dest = tmp_path / "dest"

    def download():
        dest.mkdir()
        for name in IDX_NAMES:
            (dest / name).write_bytes(b"x")

    installers = [("apt", lambda: "apt-get not found"), ("download", download)]
    assert fetch_fashion_mnist(dest, tmp_path / "nothing", installers) == dest


def test_error_names_both_options_and_each_failure(tmp_path):
    installers = [("Debian package", lambda: "apt-get not found"), ("torchvision", lambda: "no network")]
    with pytest.raises(DataUnavailable) as error:
        fetch_fashion_mnist(tmp_path / "dest", tmp_path / "debian", installers)
    message = str(error.value)
    assert "apt-get not found" in message and "no network" in message
    assert "dataset-fashion-mnist" in message and "torchvision" in message and "data.root" in message
