"""Screenshots of what an operator sees in the Prefect UI after a ``pretrain`` run.

    python -m tests.ui.screenshot_ui [--out docs/img] [--docs 300] [--keep]

Starts a Prefect server on loopback (throwaway ``PREFECT_HOME``), runs ``corpus2vec run``
against it on the first ``--docs`` articles of the sample corpus, then has headless
Chromium (Debian package ``chromium``) capture:

* ``prefect-flow-run.png``: the flow run page (graph with each task's artifacts, tags, logs);
* ``prefect-artifacts.png``: the run's Artifacts tab (one card per stable key);
* ``prefect-loss-curve.png``: the loss-curve image artifact.

Images are cropped to their content and palette-quantised to stay small (< 500 KB).
Nothing listens beyond 127.0.0.1 and the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.ui.prefect_server import prefect_server

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "flows" / "data" / "enwiki-2014-sample.jsonl.gz"
SETTINGS = ["min_count=2", "vector_size=32", "epochs=5", "num_shards=2"]
MAX_BYTES = 500_000


def chromium() -> str:
    """The Chromium binary, or a clear error saying how to install it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise SystemExit("chromium not found: apt-get update && apt-get install -y chromium")


def screenshot(url: str, out: Path, height: int = 2000) -> None:
    """Headless Chromium screenshot of ``url`` (15 s of virtual time for the UI to fetch data)."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={profile}", f"--window-size=1400,{height}",
                "--virtual-time-budget=15000", f"--screenshot={out}", url,
            ],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


def shrink(path: Path) -> int:
    """Crop the uniform background off the bottom, quantise to 128 colours; returns the size."""
    from PIL import Image, ImageChops

    image = Image.open(path).convert("RGB")
    background = Image.new("RGB", image.size, image.getpixel((image.width - 1, image.height - 1)))
    box = ImageChops.difference(image, background).getbbox()
    if box:
        image = image.crop((0, 0, image.width, min(image.height, box[3] + 24)))
    image.quantize(colors=128).save(path, optimize=True)
    return path.stat().st_size


def tiny_corpus(folder: Path, docs: int) -> Path:
    path = folder / f"sample-{docs}.jsonl.gz"
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as src, gzip.open(path, "wt", encoding="utf-8") as dst:
        dst.writelines(line for _, line in zip(range(docs), src, strict=False))
    return path


def run_pipeline(env: dict[str, str], corpus: Path, store: Path) -> dict[str, Any]:
    """``corpus2vec run`` against the server in ``env``; returns the published manifest."""
    cli = [sys.executable, "-m", "corpus2vec.flows.cli"]
    args = [*cli, "run", "--corpus", str(corpus), "--store", str(store)]
    args += ["--name", "enwiki-sample", "--json", *[a for s in SETTINGS for a in ("--set", s)]]
    proc = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"corpus2vec run failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout)
    return json.loads((Path(summary["uri"]) / "manifest.json").read_text())


def loss_curve_artifact(env: dict[str, str], flow_run_id: str) -> str:
    """The id of the run's ``*-loss-curve`` artifact, read through the API."""
    import urllib.request

    body = json.dumps({"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "type": {"any_": ["image"]}}})
    request = urllib.request.Request(
        f"{env['PREFECT_API_URL']}/artifacts/filter",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return str(json.load(resp)[0]["id"])


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline against a fresh server and write the three screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--docs", type=int, default=300, help="articles of the sample corpus to use")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (server log, store)")
    args = parser.parse_args(argv)
    chromium()  # fail before minutes of work
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="c2v-ui-"))
    try:
        with prefect_server(work / "prefect", ui=True) as env:
            manifest = run_pipeline(env, tiny_corpus(work, args.docs), work / "store")
            run_id = manifest["lineage"]["flow_run_id"]
            base = env["PREFECT_API_URL"].removesuffix("/api")
            shots = {
                "prefect-flow-run.png": (f"{base}/runs/flow-run/{run_id}", 2000),
                "prefect-artifacts.png": (f"{base}/v2/runs/flow-run/{run_id}?tab=Artifacts", 1700),
                "prefect-loss-curve.png": (
                    f"{base}/v2/artifacts/artifact/{loss_curve_artifact(env, run_id)}",
                    900,
                ),
            }
            for name, (url, height) in shots.items():
                screenshot(url, args.out / name, height)
                size = shrink(args.out / name)
                print(f"{args.out / name}\t{size} bytes\t{url}")
                if size > MAX_BYTES:
                    raise SystemExit(f"{name} is {size} bytes, over {MAX_BYTES}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
