"""Issue 13, CLI and lineage: a user error is one line on stderr and exit code 2, publish
says (and exits non-zero) when `latest` did not move, digests are printed, and URL
credentials never reach what is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from corpus2vec.flows.cli import app
from corpus2vec.model import storage
from tests.model.embedding_helpers import publish_table, random_table
from tests.model.pairs_fixtures import write_train, write_vocab

runner = CliRunner()


def _user_error(args: list[str], match: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert 1 <= len(result.stderr.strip().splitlines()) <= 2, result.stderr
    assert result.stderr.startswith("error: ") and match in result.stderr, result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["config", "--set", "epochs=abc"], "train.epochs must be int, got 'abc'"),
        (["config", "--set", "nosuch=1"], "unknown setting 'nosuch'"),
        (["config", "--set", "epochs"], "is not key=value"),
        (["prepare", "--set", "window=0"], "pairs.window must be >= 1"),
        (["evaluate", "--train", "t", "--vocab", "v", "--set", "epochs=x"], "train.epochs must be int"),
        (["pull", "a@b@c"], "invalid reference 'a@b@c'"),
        (["pull", "news@sha256:12"], "64 lower-case hex digits"),
        (["diff", "news@../x", "news"], "invalid version or alias '../x'"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args: list[str], match: str, store: str) -> None:
    _user_error([*args, *(["--store", store] if args[0] in ("pull", "diff") else [])], match)


def test_missing_things_are_user_errors(store: str, tmp_path: Path) -> None:
    _user_error(["show", "news@latest", "--store", store], "no alias 'latest'")
    _user_error(["pull", "news@20300101T000000Z-00000000", "--store", store], "is not published")
    _user_error(
        ["publish", "--train", str(tmp_path), "--vocab", str(tmp_path), "--report", str(tmp_path / "r.json"),
         "--store", store],
        "r.json does not exist",
    )  # fmt: skip
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    words, counts, vectors = random_table(20, 4)
    publish_table(store, "news", words, counts, vectors)
    _user_error(["pull", "news", "--store", store, "--to", str(mine)], "was not created by `corpus2vec pull`")


def test_publish_list_and_show_print_the_content_digest(store: str) -> None:
    words, counts, vectors = random_table(20, 4)
    result = publish_table(store, "news", words, counts, vectors)
    listed = runner.invoke(app, ["list", "news", "--store", store])
    assert listed.exit_code == 0 and f"news@{result['digest']}" in listed.stdout
    shown = runner.invoke(app, ["show", f"news@{result['version']}", "--store", store])
    assert shown.exit_code == 0 and f"news@{result['digest']}" in shown.stderr
    assert json.loads(shown.stdout)["version"] == result["version"]
    pulled = runner.invoke(app, ["pull", f"news@{result['digest']}", "--store", store])
    assert pulled.exit_code == 0, pulled.output


def _train_stage(root: Path, words: list[str], vectors: np.ndarray) -> tuple[str, str, str]:
    """A finished train stage, vocab stage and report, as `corpus2vec publish` takes them."""
    train, vocab = root / "train", root / "vocab"
    manifest = write_vocab(str(vocab), words, np.full(len(words), 10))
    write_train(str(train), vectors, manifest, pairs_trained=0)
    report = root / "report.json"
    report.write_text(json.dumps({"metrics": {"analogy": 0.5, "wordsim353": 0.6}}))
    return str(train), str(vocab), str(report)


def test_publish_exits_non_zero_when_latest_did_not_move(store: str, tmp_path: Path) -> None:
    words, counts, vectors = random_table(20, 4)
    first = publish_table(store, "news", words, counts, vectors)
    alias = Path(store) / "embeddings" / "news" / "aliases" / "latest.json"
    record = json.loads(alias.read_text())
    alias.write_text(json.dumps({**record, "version_created_at": "2999-01-01T00:00:00.000Z"}))
    train, vocab, report = _train_stage(tmp_path, words, vectors * 2)
    args = ["publish", "--train", train, "--vocab", vocab, "--report", report, "--store", store,
            "--name", "news", "--set", "min_analogy=0", "--set", "min_wordsim=-1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert f"latest still points at {first['version']}" in result.stderr
    assert "latest_moved  False" in result.stdout


def test_url_credentials_are_redacted() -> None:
    url = "https://bob:hunter2@data.example/crawl/a.wet.gz?X-Amz-Signature=abc&X-Amz-Credential=AKIA&part=2"
    assert storage.redact_url(url) == "https://data.example/crawl/a.wet.gz?part=2"
    sas = "https://acct.blob.core.windows.net/c/f.gz?sv=2024&se=2030&sig=SECRET&sp=r"
    assert storage.redact_url(sas) == "https://acct.blob.core.windows.net/c/f.gz"
    assert storage.redact_url("s3://bucket/key.gz") == "s3://bucket/key.gz"
    assert "hunter2" not in storage.redact_text(f"could not open '{url}': 403")


@pytest.fixture()
def http_corpus(tmp_path: Path):
    """A text file behind HTTP basic auth on 127.0.0.1; yields its URL with ``bob:hunter2@``."""
    import base64
    import functools
    import http.server
    import threading

    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "c.txt").write_text("the cat sat on the mat\nthe dog ran to the cat\n" * 5)
    token = "Basic " + base64.b64encode(b"bob:hunter2").decode()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def _allowed(self) -> bool:
            if self.headers.get("Authorization") == token:
                return True
            self.send_response(401)
            self.end_headers()
            return False

        def do_GET(self) -> None:
            if self._allowed():
                super().do_GET()

        def do_HEAD(self) -> None:
            if self._allowed():
                super().do_HEAD()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path / "web"))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://bob:hunter2@127.0.0.1:{server.server_address[1]}/c.txt"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_lineage_and_stage_manifests_hold_no_credentials(spark, http_corpus: str, tmp_path: Path) -> None:
    """A corpus read over a URL with credentials: the run's lineage, the tokens manifest and the
    document ids in the tokens files are recorded without them (the read itself still uses them)."""
    pytest.importorskip("aiohttp")
    from corpus2vec.flows import stages
    from corpus2vec.jobs.tokenize import run_tokenize
    from corpus2vec.model.config import CorpusConfig, load_config

    inputs = stages.fingerprint_inputs([http_corpus], load_config("tiny", []))
    assert inputs["files"][0]["url"] == http_corpus.replace("bob:hunter2@", "")
    out = tmp_path / "tokens"
    manifest = run_tokenize(spark, [http_corpus], str(out), CorpusConfig(num_parts=1))
    assert manifest.tokens > 0 and manifest.rejected_files == 0
    recorded = (out / "_manifest.json").read_text() + json.dumps(inputs)
    ids = pq.read_table(out / "part-00000.parquet", columns=["doc_id"]).column("doc_id").to_pylist()
    assert "hunter2" not in recorded and not any("hunter2" in i for i in ids)


def test_deploy_refuses_corpus_urls_with_credentials() -> None:
    stderr = _user_error(
        ["deploy", "--corpus", "https://bob:hunter2@data.example/wet.paths.gz", "--cron", "none"],
        "carries credentials or a signature",
    )
    assert "hunter2" not in stderr and "https://data.example/wet.paths.gz" in stderr


def test_stage_errors_shown_and_logged_hold_no_credentials() -> None:
    from corpus2vec.flows.pretrain import StageFailed

    url = "https://bob:hunter2@data.example/x.gz?X-Amz-Signature=s3cr3t"
    error = StageFailed("tokenize", f"corpus {url}", FileNotFoundError(f"{url} not found"), "check the path")
    assert "hunter2" not in str(error) and "s3cr3t" not in str(error)
    assert "https://data.example/x.gz" in str(error) and "FileNotFoundError" in str(error)
