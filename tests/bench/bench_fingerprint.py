"""Benchmark: fingerprinting a crawl's file list (the tokens stage key) on an S3 endpoint.

    python -m tests.bench.bench_fingerprint [--files 2000] [--endpoint URL]

Without ``--endpoint`` it starts a moto server on 127.0.0.1: sub-millisecond round
trips and a single Python process serving them, so parallel requests gain little
there and the listing (one request per folder of 500 objects) is what shows; against
real S3 (20-50 ms a request) the serial cost grows with the latency, the others barely.
Prints the three strategies measured in the same run and checks they agree.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

from corpus2vec.flows import stages
from corpus2vec.model.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--endpoint", default=None, help="an S3 endpoint (default: a local moto server)")
    args = parser.parse_args()
    server = None
    if args.endpoint is None:
        from moto.server import ThreadedMotoServer

        from tests.conftest import free_port

        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
        server.start()
        args.endpoint = f"http://127.0.0.1:{port}"
        os.environ.update(
            {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
        )
    os.environ["AWS_ENDPOINT_URL"] = args.endpoint
    try:
        import s3fs

        fs = s3fs.S3FileSystem()
        bucket = f"c2v-bench-{uuid.uuid4().hex[:8]}"
        fs.mkdir(bucket)
        urls = [
            f"s3://{bucket}/crawl/segment-{i // 500:03d}/wet/part-{i:05d}.warc.wet.gz"
            for i in range(args.files)
        ]
        for url in urls:
            fs.pipe_file(url.removeprefix("s3://"), b"x")
        paths = f"{bucket}/wet.paths"
        fs.pipe_file(paths, "\n".join(urls).encode())
        cfg = load_config("tiny", [])
        rows, digests = [], set()
        default = (stages.FINGERPRINT_THREADS, stages.LIST_MIN_FILES)
        for label, threads, list_min in (
            ("one HEAD per file, serial (before)", 1, 10**9),
            (f"one HEAD per file, {default[0]} in flight", default[0], 10**9),
            ("folder listings + parallel HEADs (default)", *default),
        ):
            stages.FINGERPRINT_THREADS, stages.LIST_MIN_FILES = threads, list_min
            s3fs.S3FileSystem.clear_instance_cache()
            started = time.perf_counter()
            inputs = stages.fingerprint_inputs([f"s3://{paths}"], cfg)
            rows.append((label, time.perf_counter() - started, len(inputs["files"])))
            digests.add(inputs["sha256"])
        assert len(digests) == 1, "the strategies disagree on the fingerprint"
        print("| strategy | files | seconds | files/s | vs serial |")
        print("| --- | --- | --- | --- | --- |")
        for label, seconds, files in rows:
            print(
                f"| {label} | {files:,} | {seconds:.2f} | {files / seconds:,.0f} | {rows[0][1] / seconds:.1f}x |"
            )
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
