"""Issue 13, pull and cache: a crafted or damaged version never writes outside its folder,
never loads unverified bytes, and a remembered alias is only a fallback for an unreachable store.

Every hostile version here is built the way an attacker with write access to the store
would: a real published version copied under a new id with its manifest edited.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from corpus2vec.model import pull as pull_module
from corpus2vec.model import registry
from corpus2vec.model.pull import load, pull
from tests.model.embedding_helpers import publish_table, random_table

EVIL = "20300101T000000Z-deadbeef"


@pytest.fixture()
def env(store: str, tmp_path: Path) -> dict:
    """Two published versions of ``news`` (the second aligned onto the first) and a cache folder."""
    words, counts, vectors = random_table(60, 8)
    first = publish_table(store, "news", words, counts, vectors)
    words2, counts2, vectors2 = random_table(60, 8, seed=3)
    second = publish_table(store, "news", words2, counts2, vectors2)
    return {
        "store": store,
        "cache": str(tmp_path / "cache"),
        "first": first,
        "second": second,
        "tmp": tmp_path,
    }


def _vdir(env: dict, version: str) -> Path:
    return Path(env["store"]) / "embeddings" / "news" / version


def _cached(env: dict, version: str) -> Path:
    return Path(env["cache"]) / pull_module.store_key(env["store"]) / "news" / version


def _craft(env: dict, edit, version: str = EVIL) -> Path:
    """Copy the first version to ``version`` and let ``edit(manifest, folder)`` change it."""
    folder = _vdir(env, version)
    shutil.copytree(_vdir(env, env["first"]["version"]), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["version"] = version
    edit(manifest, folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _entry(path: str, data: bytes) -> dict:
    return {"path": path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    """sha256 of every file under ``root`` (except under ``skip``): proves nothing else changed."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not (skip and path.is_relative_to(skip)):
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_a_dotdot_path_cannot_rewrite_another_cached_version(env: dict) -> None:
    victim = pull(f"news@{env['first']['version']}", env["store"], cache_dir=env["cache"])
    original = (victim / "vocab.tsv").read_bytes()
    crafted = b"w0\t1\n"
    victim_store = _vdir(env, env["first"]["version"]) / "vocab.tsv"

    def edit(manifest: dict, folder: Path) -> None:
        victim_store.write_bytes(crafted)  # the attacker also writes the store copy the path reaches
        manifest["files"].append(_entry(f"../{env['first']['version']}/vocab.tsv", crafted))

    _craft(env, edit)
    before = _snapshot(env["tmp"], skip=_cached(env, EVIL))
    with pytest.raises(ValueError, match=r"file name '\.\./.*' is not one of .*nothing was written"):
        pull(f"news@{EVIL}", env["store"], cache_dir=env["cache"])
    assert (victim / "vocab.tsv").read_bytes() == original
    assert _snapshot(env["tmp"], skip=_cached(env, EVIL)) == before
    assert not _cached(env, EVIL).exists()


def test_an_absolute_path_cannot_write_outside_the_cache(env: dict) -> None:
    target = env["tmp"] / "outside" / "owned.txt"
    target.parent.mkdir()
    data = b"owned\n"

    def edit(manifest: dict, folder: Path) -> None:
        where = folder / str(target).lstrip("/")  # where the old client fetched it from
        where.parent.mkdir(parents=True)
        where.write_bytes(data)
        manifest["files"].append(_entry(str(target), data))

    _craft(env, edit)
    with pytest.raises(ValueError, match="is not one of"):
        pull(f"news@{EVIL}", env["store"], cache_dir=env["cache"])
    assert not target.exists()


def test_a_manifest_must_list_every_file_loading_reads(env: dict) -> None:
    def edit(manifest: dict, folder: Path) -> None:
        manifest["files"] = []
        (folder / "vocab.tsv").write_bytes((folder / "vocab.tsv").read_bytes().replace(b"w1\t", b"zz\t"))

    folder = _craft(env, edit)
    with pytest.raises(ValueError, match=r"does not list vectors\.npy, vocab\.tsv"):
        load(f"news@{EVIL}", store=env["store"], cache_dir=env["cache"])
    assert not (_cached(env, EVIL) / "vocab.tsv").exists()
    with pytest.raises(ValueError, match=r"does not list vectors\.npy, vocab\.tsv"):
        load(str(folder))  # a folder opened directly is held to the same contract


def test_a_manifest_must_name_the_version_it_was_fetched_as(env: dict) -> None:
    def edit(manifest: dict, folder: Path) -> None:
        manifest["version"] = env["first"]["version"]  # a copy that claims to be another version

    _craft(env, edit)
    with pytest.raises(ValueError, match=r"says version .* but was fetched as '20300101T000000Z-deadbeef'"):
        pull(f"news@{EVIL}", env["store"], cache_dir=env["cache"])

    def rename(manifest: dict, folder: Path) -> None:
        manifest["name"] = "books"

    _craft(env, rename, version="20300101T000000Z-deadbee2")
    with pytest.raises(ValueError, match=r"says name 'books' but was fetched as 'news'"):
        pull("news@20300101T000000Z-deadbee2", env["store"], cache_dir=env["cache"])


def test_a_content_digest_pins_exact_content(env: dict) -> None:
    version = env["first"]["version"]
    digest = env["first"]["digest"]
    manifest_bytes = (_vdir(env, version) / "manifest.json").read_bytes()
    assert digest == "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    assert env["first"]["ref"] == f"news@{digest}"
    listed = {row["version"]: row["digest"] for row in registry.list_versions(env["store"], "news")}
    assert listed[version] == digest
    emb = load(f"news@{digest}", store=env["store"], cache_dir=env["cache"])
    assert emb.version == version
    assert load(f"news@{digest}", cache_dir=env["cache"]).version == version  # offline, from the cache
    with pytest.raises(FileNotFoundError, match=r"no published version .* has this content digest"):
        pull("news@sha256:" + "0" * 64, env["store"], cache_dir=env["cache"])
    with pytest.raises(ValueError, match="64 lower-case hex digits"):
        pull("news@sha256:abc", env["store"], cache_dir=env["cache"])
    # The same version id with edited content (e.g. metrics rewritten) no longer matches the pin.
    manifest = json.loads(manifest_bytes)
    manifest["metrics"]["analogy"] = 0.99
    (_vdir(env, version) / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(env["cache"])
    with pytest.raises(FileNotFoundError, match="has this content digest"):
        pull(f"news@{digest}", env["store"], cache_dir=env["cache"])


def test_an_offline_hit_is_served_only_when_it_verifies(env: dict) -> None:
    version = env["first"]["version"]
    path = pull(f"news@{version}", env["store"], cache_dir=env["cache"])
    planted = Path(env["cache"]) / ("0" * 16) / "news" / version  # a second "store" folder in the cache
    shutil.copytree(path, planted)
    (planted / "vectors.npy").write_bytes(b"\x93NUMPY garbage")
    manifest = json.loads((planted / "manifest.json").read_text())
    manifest["files"] = [e for e in manifest["files"] if e["path"] != "vectors.npy"]
    (planted / "manifest.json").write_text(json.dumps(manifest))
    assert load(f"news@{version}", cache_dir=env["cache"]).path == path  # the planted copy is ignored
    shutil.rmtree(path)
    with pytest.raises(ValueError, match=r"no store's cache .*does not list vectors\.npy"):
        load(f"news@{version}", cache_dir=env["cache"])


def _bytes_read() -> int:
    """Bytes this process has read through read(2) so far (Linux ``/proc/self/io`` rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_a_fetch_stops_at_the_declared_size(env: dict) -> None:
    manifest = json.loads((_vdir(env, env["first"]["version"]) / "manifest.json").read_text())
    declared = next(e["bytes"] for e in manifest["files"] if e["path"] == "vectors.bin")
    target = _vdir(env, env["first"]["version"]) / "vectors.bin"
    with open(target, "r+b") as handle:  # the store object grew to 256 MiB (sparse: cheap on disk)
        handle.truncate(256 << 20)
    before = _bytes_read()
    with pytest.raises(
        ValueError, match=rf"vectors\.bin does not match its manifest \(more than {declared} bytes"
    ):
        pull(f"news@{env['first']['version']}", env["store"], cache_dir=env["cache"])
    assert _bytes_read() - before < 16 << 20  # declared + 1 and the small files, not 256 MiB
    assert not list(_cached(env, env["first"]["version"]).glob("*.bin"))


def test_a_deleted_alias_on_a_reachable_store_is_an_error_not_a_stale_version(env: dict) -> None:
    pull("news@latest", env["store"], cache_dir=env["cache"])  # remembers latest -> second
    (Path(env["store"]) / "embeddings" / "news" / "aliases" / "latest.json").unlink()
    with pytest.raises(FileNotFoundError, match="no alias 'latest'"):
        pull("news@latest", env["store"], cache_dir=env["cache"])


def test_a_remembered_alias_is_validated_before_it_is_served(env: dict) -> None:
    pull("news@latest", env["store"], cache_dir=env["cache"])
    remembered = _cached(env, "aliases") / "latest.json"
    outside = env["tmp"] / "elsewhere"
    shutil.copytree(_cached(env, env["second"]["version"]), outside)
    remembered.write_text(json.dumps({"name": "news", "alias": "latest", "version": "../../../../elsewhere"}))
    shutil.rmtree(env["store"])  # the store is unreachable: the fallback is consulted
    before = _snapshot(outside)
    with pytest.raises(FileNotFoundError):
        load("news@latest", store=env["store"], cache_dir=env["cache"])
    assert _snapshot(outside) == before  # the old client deleted elsewhere/manifest.json here
    remembered.write_text(
        json.dumps({"name": "news", "alias": "latest", "version": env["second"]["version"]})
    )
    vocab = _cached(env, env["second"]["version"]) / "vocab.tsv"
    vocab.write_bytes(vocab.read_bytes().replace(b"w2\t", b"zz\t"))  # the remembered copy was edited
    with pytest.raises(FileNotFoundError):
        load("news@latest", store=env["store"], cache_dir=env["cache"])


def test_pull_to_refuses_a_folder_it_did_not_create(env: dict) -> None:
    mine = env["tmp"] / "project"
    mine.mkdir()
    (mine / "manifest.json").write_text('{"mine": true}\n')
    (mine / "notes.txt").write_text("keep me\n")
    before = _snapshot(mine)
    with pytest.raises(ValueError, match="not empty and was not created by `corpus2vec pull`"):
        pull("news", env["store"], to=str(mine))
    assert _snapshot(mine) == before and sorted(p.name for p in mine.iterdir()) == [
        "manifest.json",
        "notes.txt",
    ]


def test_pull_to_its_own_folder_replaces_the_previous_version_entirely(env: dict) -> None:
    out = env["tmp"] / "out"
    pull(f"news@{env['second']['version']}", env["store"], to=str(out))  # aligned: has rotation.npy
    assert (out / "rotation.npy").is_file()
    pull(f"news@{env['first']['version']}", env["store"], to=str(out))
    assert not (out / "rotation.npy").exists() and not (out / "drift.json").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert {e["path"] for e in manifest["files"]} | {"manifest.json", ".corpus2vec-pull"} == {
        p.name for p in out.iterdir()
    }


def test_a_planted_symlink_in_the_destination_is_not_followed(env: dict) -> None:
    victim = env["tmp"] / "victim.npy"
    victim.write_bytes(b"precious")
    dest = _cached(env, env["first"]["version"])
    dest.mkdir(parents=True)
    (dest / "vectors.npy").symlink_to(victim)
    pull(f"news@{env['first']['version']}", env["store"], cache_dir=env["cache"])
    assert victim.read_bytes() == b"precious"
    assert not (dest / "vectors.npy").is_symlink()
    assert np.load(dest / "vectors.npy").shape == (60, 8)
