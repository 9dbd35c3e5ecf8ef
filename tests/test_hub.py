"""The explicit download: nothing is fetched without a pinned digest or the user's consent."""

from __future__ import annotations

import hashlib
import urllib.error

import pytest

from mobilenetv3.cli import main
from mobilenetv3.weights import hub
from mobilenetv3.weights.errors import WeightsError


def test_unverified_download_is_refused_before_any_network_access(tmp_path, monkeypatch):
    def no_network(*_args, **_kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(hub.urllib.request, "urlretrieve", no_network)
    with pytest.raises(ValueError, match="no verified sha256 is pinned"):
        hub.download("v3_large_1.0", tmp_path)
    with pytest.raises(ValueError, match="no official checkpoint named 'v3_huge'"):
        hub.download("v3_huge", tmp_path)
    assert main(["download", "v3_small_1.0", "--dir", str(tmp_path)]) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_digest_mismatch_leaves_no_file(tmp_path, monkeypatch):
    filename, _ = hub.RELEASES["v3_small_1.0"]
    monkeypatch.setitem(hub.RELEASES, "v3_small_1.0", (filename, "0" * 64))
    monkeypatch.setattr(hub.urllib.request, "urlretrieve",
                        lambda url, path: path.write_bytes(b"not the release"))  # fmt: skip
    with pytest.raises(ValueError, match="does not match the pinned"):
        hub.download("v3_small_1.0", tmp_path)
    assert list(tmp_path.iterdir()) == []
    good = hashlib.sha256(b"not the release").hexdigest()
    monkeypatch.setitem(hub.RELEASES, "v3_small_1.0", (filename, good))
    assert hub.download("v3_small_1.0", tmp_path).read_bytes() == b"not the release"


def test_a_network_failure_is_one_clear_error(tmp_path, monkeypatch):
    def offline(url, path):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setitem(hub.RELEASES, "v3_small_1.0", ("v3-small_224_1.0_float.tgz", "0" * 64))
    monkeypatch.setattr(hub.urllib.request, "urlretrieve", offline)
    with pytest.raises(WeightsError, match=r"download of https://\S+v3-small_224_1.0_float.tgz"):
        hub.download("v3_small_1.0", tmp_path)
    assert list(tmp_path.iterdir()) == []
