"""The OpenAI-compatible backend against a small embeddings server started on 127.0.0.1."""
from __future__ import annotations

import json
import logging
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from mingle_bench.encoders import EmbeddingCache, embed_texts, embed_visit_notes, load_encoder
from mingle_bench.encoders.openai_api import OpenAIError, approx_tokenize

KEY = "sk-test-VERY-SECRET-0123456789"
DIM = 8


def fake_vector(text: str) -> list[float]:
    """Deterministic, deliberately unnormalised vector for a text."""
    h = zlib.crc32(text.encode())
    return [float((h >> (3 * i)) % 7) + 1.0 for i in range(DIM)]


class Server:
    """Answers POST /v1/embeddings; ``plan`` is a queue of status codes to answer before succeeding."""

    def __init__(self):
        self.plan: list[int] = []
        self.requests: list[dict] = []
        self.echo_key_in_errors = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if self.path != "/v1/embeddings":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if outer.plan:
                    code = outer.plan.pop(0)
                    msg = "rate limited" if code == 429 else "server error"
                    if code == 401:
                        msg = "Incorrect API key provided" + (f": {self.headers.get('Authorization')}"
                                                              if outer.echo_key_in_errors else "")
                    return self._send(code, {"error": {"message": msg}}, {"Retry-After": "0"} if code == 429 else {})
                inputs = body["input"]
                dim = body.get("dimensions", DIM)
                data = [{"object": "embedding", "index": i, "embedding": fake_vector(t)[:dim]}
                        for i, t in enumerate(inputs)]
                self._send(200, {"object": "list", "model": body["model"], "data": data[::-1]})  # any order

            def _send(self, code, payload, headers=None):
                raw = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    srv = Server()
    monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    yield srv
    srv.close()


def expected(texts):
    return torch.nn.functional.normalize(torch.tensor([fake_vector(t) for t in texts]), dim=-1)


def test_batches_order_auth_and_normalisation(server):
    enc = load_encoder("openai:test-embedder?batch_size=3&backoff_s=0")
    texts = [f"concept number {i}" for i in range(7)]
    out = enc.encode(texts)
    assert [len(r["body"]["input"]) for r in server.requests] == [3, 3, 1]
    assert all(r["auth"] == f"Bearer {KEY}" and r["body"]["model"] == "test-embedder"
               for r in server.requests)
    assert out.dtype == torch.float32 and out.shape == (7, DIM)
    assert torch.allclose(out, expected(texts), atol=1e-6)


def test_dim_probe_dimensions_and_identity(server):
    enc = load_encoder("openai:local-bge?backoff_s=0")
    assert enc.dim == DIM and len(server.requests) == 1  # probed once
    assert enc.identity == f"openai:local-bge@{server.url.split('//')[1]}"
    small = load_encoder("openai:text-embedding-3-small?dimensions=4&backoff_s=0")
    assert small.encode(["x"]).shape == (1, 4) and server.requests[-1]["body"]["dimensions"] == 4


@pytest.mark.parametrize("failures", [[429], [500, 503], [429, 502, 429]])
def test_retries_on_429_and_5xx(server, failures, caplog):
    enc = load_encoder("openai:m?backoff_s=0.01&max_retries=4")
    enc._dim = DIM
    server.plan = list(failures)
    with caplog.at_level(logging.DEBUG):
        out = enc.encode(["heart attack"])
    assert torch.allclose(out, expected(["heart attack"]), atol=1e-6)
    assert enc.retries == len(failures) and len(server.requests) == len(failures) + 1
    assert "retry" in caplog.text and KEY not in caplog.text


def test_retries_exhausted_is_a_clear_error(server):
    enc = load_encoder("openai:m?backoff_s=0&max_retries=2")
    enc._dim = DIM
    server.plan = [503, 503, 503, 503]
    with pytest.raises(OpenAIError, match="failed after 3 attempts: HTTP 503"):
        enc.encode(["x"])


def test_401_is_a_clear_error_and_the_key_never_leaks(server, caplog, capsys):
    enc = load_encoder("openai:m?backoff_s=0")
    enc._dim = DIM
    server.plan = [401]
    server.echo_key_in_errors = True  # a server that echoes the key back must not make us print it
    with caplog.at_level(logging.DEBUG), pytest.raises(OpenAIError) as info:
        enc.encode(["x"])
    msg = str(info.value)
    assert "HTTP 401" in msg and "OPENAI_API_KEY" in msg and KEY not in msg and "***" in msg
    assert len(server.requests) == 1, "401 is not retried"
    captured = capsys.readouterr()
    assert KEY not in caplog.text + captured.out + captured.err + repr(enc) + json.dumps(enc.describe())


def test_cli_401_message_without_key(server, capsys):
    from mingle_bench.cli import main

    server.plan = [401]
    # the CLI turns the failure into one line on stderr, naming the endpoint
    assert main(["profile-encoder", "--encoder", "openai:text-embedding-ada-002?backoff_s=0", "--names", "1",
                 "--notes", "1", "--repeats", "1"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and server.url in err and "Traceback" not in err and KEY not in err


def test_other_4xx_not_retried(server):
    enc = load_encoder("openai:m?backoff_s=0")
    enc._dim = DIM
    server.plan = [400]
    with pytest.raises(OpenAIError, match="HTTP 400"):
        enc.encode(["x"])
    assert len(server.requests) == 1


def test_cache_and_chunked_notes_through_the_endpoint(server, tmp_path):
    enc = load_encoder("openai:m?backoff_s=0&max_length=40")
    enc._dim = DIM
    cache = EmbeddingCache(tmp_path)
    embed_texts(enc, ["a", "b", "a"], cache=cache, progress=False)
    n = len(server.requests)
    embed_texts(enc, ["b", "a"], cache=EmbeddingCache(tmp_path), progress=False)
    assert len(server.requests) == n, "cached texts are not sent again"
    note = "Patient admitted with chest pain and shortness of breath. " * 6
    emb, has, rep = embed_visit_notes(enc, [[1], []], lambda ids: {1: note}, chunk_tokens=40, overlap=8,
                                      cache=cache, progress=False)
    pieces = approx_tokenize(note)
    chunks = ["".join(pieces[s:s + 40]) for s in range(0, len(pieces) - 8, 32)]
    sent = [t for r in server.requests[n:] for t in r["body"]["input"]]
    assert sorted(sent) == sorted(set(chunks)) and all(c in note for c in sent)
    assert torch.allclose(emb[0], torch.nn.functional.normalize(expected(chunks).mean(0), dim=0), atol=1e-6)
    assert has.tolist() == [True, False] and rep["tokens_total"] == len(pieces)
    written = b"".join(f.read_bytes() for f in tmp_path.rglob("*") if f.is_file())
    assert KEY.encode() not in written and KEY not in json.dumps(rep), "the key is never written"


@pytest.mark.parametrize("text", ["", "a", "hello   world\n\nnext line ", "Myocardial\tinfarction, 2x/day.",
                                  "supercalifragilistic"])
def test_approx_tokens_restore_the_text(text):
    pieces = approx_tokenize(text)
    assert "".join(pieces) == text
    assert all(len(p.strip()) <= 4 for p in pieces)


def test_configuration_errors(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY is not set"):
        load_encoder("openai:text-embedding-ada-002")
    monkeypatch.setenv("OPENAI_BASE_URL", "localhost:8000")
    with pytest.raises(ValueError, match="OPENAI_BASE_URL"):
        load_encoder("openai:m")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://user:pw@localhost:8000/v1")
    with pytest.raises(ValueError, match="must not contain credentials"):
        load_encoder("openai:m")
    with pytest.raises(ValueError, match="needs a model name"):
        load_encoder("openai:")
    with pytest.raises(ValueError, match="unknown option 'pooling'"):
        load_encoder("openai:m?pooling=cls")


def test_wrong_dimension_from_server_is_a_clear_error(server):
    enc = load_encoder("openai:text-embedding-ada-002?backoff_s=0")  # ada-002 is known to be 1536-d
    with pytest.raises(OpenAIError, match="does not match dim 1536"):
        enc.encode(["x"])


def _closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return port


def test_unreachable_endpoint_fails_fast_naming_the_url(monkeypatch):
    import time

    url = f"http://127.0.0.1:{_closed_port()}/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    enc = load_encoder("openai:m")  # default policy: 6 retries, 1 s backoff (73 s before this fix)
    enc._dim = DIM
    t0 = time.monotonic()
    with pytest.raises(OpenAIError, match="connection was refused") as err:
        enc.encode(["x"])
    assert time.monotonic() - t0 < 5
    assert f"{url}/embeddings" in str(err.value) and enc.requests_sent == 2 and enc.retries == 1


def test_dns_failure_fails_at_once(monkeypatch):
    import socket
    import urllib.error
    import urllib.request

    def no_dns(*a, **k):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", no_dns)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://no-such-host.invalid/v1")
    enc = load_encoder("openai:m")
    enc._dim = DIM
    with pytest.raises(OpenAIError, match=r"http://no-such-host.invalid/v1/embeddings: its host name does not resolve"):
        enc.encode(["x"])
    assert enc.requests_sent == 1 and enc.retries == 0


def test_timeouts_keep_their_retries(monkeypatch):
    import urllib.error
    import urllib.request

    def slow(*a, **k):
        raise urllib.error.URLError(TimeoutError("timed out"))

    monkeypatch.setattr(urllib.request, "urlopen", slow)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    enc = load_encoder("openai:m?backoff_s=0&max_retries=3")
    enc._dim = DIM
    with pytest.raises(OpenAIError, match="failed after 4 attempts: connection error"):
        enc.encode(["x"])
    assert enc.retries == 3
