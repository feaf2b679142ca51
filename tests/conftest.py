"""Fixtures shared by every test layer: the sample corpus, a store folder, Spark, moto S3.

Servers bind 127.0.0.1 only and are stopped by the fixture that started them.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = ROOT / "flows" / "data" / "enwiki-2014-sample.jsonl.gz"
SHARED_DATA = ROOT.parent / "shared" / "data"


def free_port() -> int:
    """A free TCP port on loopback (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def sample_corpus() -> Path:
    """The shipped sample corpus (3,000 Wikipedia articles as JSON lines)."""
    return SAMPLE_CORPUS


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 300 articles of the sample: fast enough for every Spark test."""
    path = tmp_path_factory.mktemp("corpus") / "small.jsonl.gz"
    with gzip.open(SAMPLE_CORPUS, "rt", encoding="utf-8") as src, gzip.open(path, "wt") as dst:
        for i, line in enumerate(src):
            if i >= 300:
                break
            json.loads(line)
            dst.write(line)
    return path


@pytest.fixture()
def store(tmp_path: Path) -> str:
    """A fresh local store root."""
    path = tmp_path / "store"
    path.mkdir()
    return str(path)


@pytest.fixture(scope="session")
def spark():
    """One ``local[2]`` Spark session for the whole test run."""
    pytest.importorskip("pyspark")
    from corpus2vec.jobs.session import get_spark

    session = get_spark("local[2]", app_name="corpus2vec-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1; yields its endpoint URL and sets the AWS env for s3fs."""
    moto_server = pytest.importorskip("moto.server")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _S3_ENV}
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
    )
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")


@pytest.fixture()
def s3_bucket(s3_server: str) -> str:
    """A new, empty bucket on the moto server; yields ``s3://bucket``."""
    import uuid

    import boto3
    import s3fs

    name = f"c2v-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=name)
    s3fs.S3FileSystem.clear_instance_cache()
    return f"s3://{name}"
