"""``fmhub serve``: a real uvicorn server in a subprocess on 127.0.0.1, talked to with httpx and the
``openai`` client. Responses must equal ``model(x)``; every limit and error is exercised. The
server of every plugin family starts from a fresh interpreter; the toy servers are forked from a
warm process that has imported torch and fmhub already (see ZYGOTE)."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import fmhub

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

#: The server process: the toy plugin plus "chaos", a cross-cutting plugin that slows the forward
#: stage (FMHUB_TEST_DELAY_S per call; an input whose first number is 777 sleeps 3 s) or fails it
#: (an input containing 666), then runs ``fmhub serve`` through the real CLI.
SERVER = textwrap.dedent("""
    import os, sys, time
    import fmhub
    from fmhub.cli import main

    class Chaos:
        @fmhub.hookimpl(wrapper=True)
        def fmhub_forward(self, model, batch):
            x = batch.get("x") if isinstance(batch, dict) else None
            if x is not None:
                if bool((x == 666).any()):
                    raise RuntimeError("poisoned batch")
                if bool((x[:, 0] == 777).any()):
                    time.sleep(3.0)
                time.sleep(float(os.environ.get("FMHUB_TEST_DELAY_S", "0")))
            return (yield)

    fmhub.get_hub().register(Chaos(), name="chaos")
    sys.exit(main(["serve", *sys.argv[1:]]))
""")


#: A warm process that has imported what every server imports (torch, FastAPI, uvicorn, fmhub)
#: and forks one SERVER process per request (JSON lines on stdin: args, env, log; it answers with
#: the pid). A forked server runs the same code through the real CLI in its own process, with its
#: own environment, signals and sockets, without paying a fresh interpreter's imports (seconds of
#: CPU each). It reaps its children and writes each exit status to LOG.rc (what ``wait`` reads).
#: The server of every plugin family (``families_server``) is still a fresh ``python -c`` process.
ZYGOTE = textwrap.dedent("""
    import json, os, signal, sys
    import fastapi, torch, uvicorn  # noqa: F401 - the imports every server pays, paid once
    import fmhub.cli, fmhub.serve.app  # noqa: F401

    SERVER, children = sys.argv[1], {}

    def reap(*_):
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            rc = children.pop(pid)
            with open(rc + ".tmp", "w") as f:
                f.write(str(os.waitstatus_to_exitcode(status)))
            os.replace(rc + ".tmp", rc)

    signal.signal(signal.SIGCHLD, reap)
    for line in sys.stdin:
        req = json.loads(line)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:  # the server: stdio to its log, its own environment, then the real CLI
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.environ.clear()
            os.environ.update(req["env"])
            sys.argv = ["-c", *req["args"]]
            exec(compile(SERVER, "<server>", "exec"), {"__name__": "__main__"})
            sys.exit(0)  # SERVER exits itself; its SystemExit ends this process, not the loop
        children[pid] = req["log"] + ".rc"
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        print(pid, flush=True)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for pid in children:  # stdin closed: no server outlives the tests
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Forked:
    """A server the zygote forked: ``poll``, ``wait``, ``send_signal``, ``kill`` as a Popen's."""

    def __init__(self, pid: int, log: Path):
        self.pid, self.rc, self.returncode = pid, Path(f"{log}.rc"), None

    def poll(self) -> int | None:
        if self.returncode is None and self.rc.is_file():
            self.returncode = int(self.rc.read_text())
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"server {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # not reaped yet: the pid is still this server's
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The ZYGOTE process of one test module; ``spawn(args, env, log)`` gives a :class:`Forked`."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE, SERVER],
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def spawn(self, args: list[str], env: dict[str, str], log: Path) -> Forked:
        self.proc.stdin.write(json.dumps({"args": args, "env": env, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        pid = self.proc.stdout.readline()
        if not pid:
            raise RuntimeError(f"the zygote exited with code {self.proc.wait()}")
        return Forked(int(pid), log)

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Server:
    """``fmhub serve ARGS`` in its own process, forked by ``zygote`` or else a fresh interpreter;
    ``url``, ``client`` (httpx), ``metrics()``, ``close()`` (SIGTERM; gives the server's output)."""

    def __init__(
        self,
        *args: str,
        logs: Path,
        zygote: Zygote | None = None,
        env: dict[str, str | None] | None = None,
        ready_timeout: float = 120,
    ):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # one intra-op thread on both sides: float sums in the same order, so "equal" is exact
        environ = {**os.environ, "FMHUB_LOAD_PLUGINS": "toy", "OMP_NUM_THREADS": "1", **(env or {})}
        environ = {k: v for k, v in environ.items() if v is not None}
        self.log = logs / f"server-{self.port}.log"
        argv = [*args, "--port", str(self.port)]
        if zygote is not None:
            self.proc = zygote.spawn(argv, environ, self.log)
        else:
            with self.log.open("w") as out:
                self.proc = subprocess.Popen(
                    [sys.executable, "-c", SERVER, *argv],
                    env=environ,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
        self.client = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.monotonic() + ready_timeout
        while True:
            if self.proc.poll() is not None:
                self.client.close()
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                ready = self.client.get("/ready")
                if ready.status_code == 200:
                    break
                if "errors" in ready.json():
                    self.close()
                    raise RuntimeError(f"a model failed to load: {ready.json()['errors']}")
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("server not ready in time")
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text() if self.log.is_file() else ""

    def metrics(self) -> dict[str, float]:
        text = self.client.get("/metrics").text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def close(self) -> str:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.output()


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """The servers run on one intra-op thread (OMP_NUM_THREADS=1); so do the reference calls here,
    so that results compare exactly."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture
def server_factory(zygote, logs):
    """Servers of one test, forked from the warm ``zygote``; all closed after the test."""
    made: list[Server] = []

    def make(*args: str, **kw) -> Server:
        made.append(Server(*args, logs=logs, zygote=zygote, **kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Tiny saved models of the three families: a BERT sentence embedder, a timm classifier, a
    torchaudio wav2vec2 embedder (saved by fmhub, served from their folders)."""
    pytest.importorskip("fmhub_transformers")
    from fmhub_torchaudio.testing import tiny_options
    from fmhub_transformers.testing import build_tiny_model

    root = tmp_path_factory.mktemp("serve-models")
    previous = fmhub.set_hub(fmhub.Hub())
    try:
        bert = build_tiny_model(root / "bert", arch="bert", task="embedding")
        fmhub.load("timm:test_resnet.r160_in1k", pretrained=False, device="cpu").save(root / "timm")
        fmhub.load("torchaudio:models.wav2vec2_model", device="cpu", **tiny_options()).save(
            root / "audio"
        )
    finally:
        fmhub.set_hub(previous)
    return {"bert": Path(bert), "timm": root / "timm", "audio": root / "audio"}


@pytest.fixture(scope="module")
def families_server(folders, gpt2_folder, llama_folder, logs):
    """One fresh ``python -c SERVER`` process (from a cold interpreter, as a user starts it) with a
    model of every plugin family, the generative ones included."""
    s = Server(
        "toy:embed",
        "toy:classify",
        f"bert={folders['bert']}",
        f"vision={folders['timm']}",
        f"speech={folders['audio']}",
        f"lm={gpt2_folder}",
        f"chat={llama_folder}",
        logs=logs,
        env={"FMHUB_LOAD_PLUGINS": None, "HF_HUB_OFFLINE": "1"},
    )
    yield s
    s.close()


@pytest.fixture(scope="module")
def toy_server(zygote, logs):
    s = Server(
        "toy:embed",
        "toy-classifier",
        "--max-wait-ms",
        "20",
        logs=logs,
        zygote=zygote,
        env={"FMHUB_TEST_DELAY_S": "0.02"},
    )
    yield s
    s.close()


def _j(result):
    """A result as JSON gives it back (tuples become lists)."""
    return json.loads(json.dumps(result.to_dict()))


def _predict(server: Server, name: str, inputs, **kw):
    return server.client.post(f"/v1/models/{name}/predict", json={"inputs": inputs}, **kw)


# -- correctness ---------------------------------------------------------------------------------


def test_health_ready_and_models(toy_server):
    assert toy_server.client.get("/health").json() == {"status": "ok"}
    ready = toy_server.client.get("/ready").json()
    assert ready == {"ready": True, "models": {"toy:embed": "ready", "toy-classifier": "ready"}}
    data = toy_server.client.get("/v1/models").json()["data"]
    assert [(d["id"], d["model_id"], d["task"]) for d in data] == [
        ("toy:embed", "toy:embed", "embedding"),
        ("toy-classifier", "toy:classify", "classification"),
    ]


def test_predict_equals_model_exactly(toy_server, toy_hub):
    xs = [[0.1, 0.2, 0.3, 0.4], [1, -1, 0.5, 2], "3,2,1,0"]
    emb = fmhub.load("toy:embed")
    for x in xs:  # one request at a time: exactly model(x)
        got = _predict(toy_server, "toy:embed", [x])
        assert got.status_code == 200 and got.json()["task"] == "embedding"
        assert np.array_equal(np.asarray(got.json()["results"][0], dtype=np.float32), emb(x))
    many = _predict(toy_server, "toy:embed", xs).json()["results"]  # exactly model.predict(xs)
    assert np.array_equal(np.asarray(many, np.float32), np.stack(emb.predict(xs)))
    clf = fmhub.load("toy:classify")
    got = _predict(toy_server, "toy-classifier", xs[:2]).json()["results"]
    assert got == [_j(r) for r in clf.predict(xs[:2])]
    # the spec id and aliases reach a served model too; a single "input" is accepted
    one = toy_server.client.post("/v1/models/toy:classify/predict", json={"input": xs[0]})
    assert one.json()["results"] == [_j(clf(xs[0]))]


def test_three_families_over_json_base64_and_multipart(families_server, folders):
    from fmhub_timm.testing import photos
    from fmhub_transformers.testing import CORPUS

    s = families_server
    bert = fmhub.load(folders["bert"])
    got = _predict(s, "bert", list(CORPUS[:3])).json()["results"]
    assert np.array_equal(np.asarray(got, np.float32), np.stack(bert.predict(CORPUS[:3])))
    got = _predict(s, "bert", [CORPUS[5]]).json()["results"]
    assert np.array_equal(np.asarray(got[0], np.float32), bert(CORPUS[5]))

    vision = fmhub.load(folders["timm"])
    photo = next(iter(photos().values()))
    from PIL import Image

    img = Image.fromarray(photo).resize((96, 80))
    png = io.BytesIO()
    img.save(png, format="PNG")
    expected = _j(vision(Image.open(io.BytesIO(png.getvalue()))))
    b64 = base64.b64encode(png.getvalue()).decode()
    assert _predict(s, "vision", [{"image": b64}]).json()["results"] == [expected]
    form = s.client.post(
        "/v1/models/vision/predict", files=[("file", ("a.png", png.getvalue(), "image/png"))]
    )
    assert form.status_code == 200 and form.json()["results"] == [expected]

    speech = fmhub.load(folders["audio"])
    wave = np.sin(np.linspace(0, 400, 8000, dtype=np.float32)) * 0.3
    expected = speech((wave, 8000))
    raw = base64.b64encode(wave.astype("<f4").tobytes()).decode()
    got = _predict(
        s,
        "speech",
        [{"audio": raw, "sample_rate": 8000}, {"array": wave.tolist(), "sample_rate": 8000}],
    ).json()["results"]
    pair = np.stack(speech.predict([(wave, 8000), (wave, 8000)]))
    # a batch of two in the server and here: equal up to float summation order (thread counts)
    np.testing.assert_allclose(np.asarray(got, np.float32), pair, rtol=1e-5, atol=1e-6)
    import soundfile as sf

    wav = io.BytesIO()
    sf.write(wav, wave, 8000, format="WAV", subtype="FLOAT")
    form = s.client.post(
        "/v1/models/speech/predict", files=[("file", ("a.wav", wav.getvalue(), "audio/wav"))]
    )
    assert np.array_equal(np.asarray(form.json()["results"][0], np.float32), expected)
    raw_form = s.client.post(
        "/v1/models/speech/predict",
        data={"sample_rate": "8000"},
        files=[("file", ("a.raw", wave.astype("<f4").tobytes(), "application/octet-stream"))],
    )
    assert np.array_equal(np.asarray(raw_form.json()["results"][0], np.float32), expected)
    bad = _predict(s, "vision", [{"image": "not base64!"}])
    assert bad.status_code == 422 and "not valid base64" in bad.json()["error"]["message"]


def test_openai_client_embeddings(families_server, folders):
    openai = pytest.importorskip("openai")
    from fmhub_transformers.testing import CORPUS

    bert = fmhub.load(folders["bert"])
    client = openai.OpenAI(base_url=families_server.url + "/v1", api_key="unused")
    out = client.embeddings.create(model="bert", input=list(CORPUS[:4]))  # base64 by default
    assert [d.index for d in out.data] == [0, 1, 2, 3]
    expected = np.stack(bert.predict(CORPUS[:4]))
    assert np.array_equal(np.asarray([d.embedding for d in out.data], np.float32), expected)
    assert out.usage.prompt_tokens > 4 and out.model == "bert"
    plain = families_server.client.post(
        "/v1/embeddings", json={"model": "bert", "input": CORPUS[0], "encoding_format": "float"}
    ).json()
    assert np.array_equal(np.asarray(plain["data"][0]["embedding"], np.float32), bert(CORPUS[0]))
    with pytest.raises(openai.NotFoundError, match="not served"):
        client.embeddings.create(model="nope", input="x")
    with pytest.raises(openai.BadRequestError, match="embedding"):
        client.embeddings.create(model="toy:classify", input="1,2,3,4")


# -- batching ------------------------------------------------------------------------------------


def _bucket(metrics: dict[str, float], name: str, model: str, le: str) -> float:
    return metrics[f'{name}_bucket{{model="{model}",le="{le}"}}']


def test_batches_form_under_concurrency_and_results_go_back_in_order(toy_server, toy_hub):
    emb = fmhub.load("toy:embed")
    before = toy_server.metrics()
    xs = [[i, i / 2, -i, 1.0] for i in range(48)]

    def one(x):
        return _predict(toy_server, "toy:embed", [x, [0, 0, 0, x[0]]])

    with cf.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(one, xs))
    for x, r in zip(xs, responses):  # merged batches: model(x) up to float summation order
        assert r.status_code == 200
        a, b = r.json()["results"]
        np.testing.assert_allclose(np.asarray(a, np.float32), emb(x), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            np.asarray(b, np.float32), emb([0, 0, 0, x[0]]), rtol=1e-5, atol=1e-5
        )
    after = toy_server.metrics()
    model = "toy:embed"
    calls = after[f'fmhub_batches_total{{model="{model}"}}'] - before.get(
        f'fmhub_batches_total{{model="{model}"}}', 0
    )
    merged = (
        after[f'fmhub_batch_requests_count{{model="{model}"}}']
        - _bucket(after, "fmhub_batch_requests", model, "1")
    ) - (
        before.get(f'fmhub_batch_requests_count{{model="{model}"}}', 0)
        - before.get(f'fmhub_batch_requests_bucket{{model="{model}",le="1"}}', 0)
    )
    assert calls < len(xs) and merged >= 1, (calls, merged)
    items = after[f'fmhub_batch_size_sum{{model="{model}"}}'] - before.get(
        f'fmhub_batch_size_sum{{model="{model}"}}', 0
    )
    assert items == 2 * len(xs)
    assert after[f'fmhub_requests_total{{model="{model}",endpoint="predict",status="200"}}'] >= 48


def test_batching_off_runs_one_call_per_request(server_factory):
    s = server_factory("toy:embed", "--no-batching", env={"FMHUB_TEST_DELAY_S": "0.02"})
    with cf.ThreadPoolExecutor(8) as pool:
        codes = [
            r.status_code
            for r in pool.map(lambda i: _predict(s, "toy:embed", [[i, 0, 0, 0]]), range(16))
        ]
    assert codes == [200] * 16
    m = s.metrics()
    assert m['fmhub_batches_total{model="toy:embed"}'] == 16
    assert _bucket(m, "fmhub_batch_size", "toy:embed", "1") == 16


def test_workers_run_model_calls_at_once(server_factory, capsys, toy_hub):
    """--workers 2: a request is answered while another model call is still running (the 777
    input holds its call for 3 s); with the default one worker it would wait behind it."""
    from fmhub.cli import main

    emb = fmhub.load("toy:embed")
    s = server_factory("toy:embed", "--workers", "2", "--max-batch", "1")
    with cf.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(_predict, s, "toy:embed", [[777, 0, 0, 0]])
        time.sleep(0.5)
        fast = _predict(s, "toy:embed", [[1, 2, 3, 4]])
        assert fast.status_code == 200 and not slow.done()
        assert np.array_equal(np.asarray(fast.json()["results"][0], np.float32), emb([1, 2, 3, 4]))
        assert slow.result().status_code == 200
    assert s.metrics()['fmhub_batches_total{model="toy:embed"}'] == 2
    assert main(["serve", "toy:embed", "--workers", "0"]) == 2
    assert "workers" in capsys.readouterr().err


def test_a_failing_batch_fails_only_its_own_request(toy_server, toy_hub):
    emb = fmhub.load("toy:embed")
    xs = [[1, 2, 3, 4]] * 6 + [[666, 0, 0, 0]] + [[4, 3, 2, 1]] * 6
    with cf.ThreadPoolExecutor(13) as pool:
        responses = list(pool.map(lambda x: _predict(toy_server, "toy:embed", [x]), xs))
    for x, r in zip(xs, responses):
        if x[0] == 666:
            assert r.status_code == 500 and "poisoned batch" in r.json()["error"]["message"]
        else:
            assert r.status_code == 200
            np.testing.assert_allclose(
                np.asarray(r.json()["results"][0], np.float32), emb(x), rtol=1e-5, atol=1e-5
            )
    assert _predict(toy_server, "toy:embed", [[1, 1, 1, 1]]).status_code == 200


def test_load_test_loses_no_request(toy_server, toy_hub):
    clf = fmhub.load("toy:classify")
    n, started = 240, time.monotonic()
    xs = [[(i % 7) - 3, i % 5, 1, -(i % 3)] for i in range(n)]
    before = toy_server.metrics().get(
        'fmhub_requests_total{model="toy-classifier",endpoint="predict",status="200"}', 0
    )
    with cf.ThreadPoolExecutor(24) as pool:
        futures = [pool.submit(_predict, toy_server, "toy-classifier", [x]) for x in xs]
        responses = [f.result(timeout=120) for f in futures]
    assert time.monotonic() - started < 120
    assert [r.status_code for r in responses] == [200] * n
    for r, x in zip(responses, xs):
        (got,) = r.json()["results"]
        assert got["label"] == clf(x).label and abs(got["score"] - clf(x).score) < 1e-5
    after = toy_server.metrics()[
        'fmhub_requests_total{model="toy-classifier",endpoint="predict",status="200"}'
    ]
    assert after - before == n


# -- limits and errors ---------------------------------------------------------------------------


def test_bad_input_is_422_with_the_input_error_message(toy_server, toy_hub):
    with pytest.raises(fmhub.InputError) as info:
        fmhub.load("toy:embed")("not numbers")
    r = _predict(toy_server, "toy:embed", ["not numbers"])
    assert r.status_code == 422
    assert r.json()["error"] == {"message": str(info.value), "type": "InputError"}
    for body in (
        b"{not json",
        json.dumps({"inputs": "x"}).encode(),
        json.dumps({"inputs": []}).encode(),
        json.dumps({"other": 1}).encode(),
    ):
        r = toy_server.client.post("/v1/models/toy:embed/predict", content=body)
        assert r.status_code == 422, body
    m = toy_server.metrics()
    assert m['fmhub_request_errors_total{model="toy:embed",endpoint="predict",status="422"}'] >= 5


def test_unknown_model_is_404(toy_server):
    r = _predict(toy_server, "toy:nothing", [[1, 2, 3, 4]])
    assert r.status_code == 404 and "toy:nothing" in r.json()["error"]["message"]
    assert toy_server.metrics()['fmhub_requests_total{model="-",endpoint="predict",status="404"}']


def test_full_queue_is_503_with_retry_after(server_factory):
    s = server_factory("toy:embed", "--max-queue", "2", "--max-batch", "1")
    with cf.ThreadPoolExecutor(8) as pool:
        slow = pool.submit(_predict, s, "toy:embed", [[777, 0, 0, 0]])
        time.sleep(0.5)  # the worker is busy with it; the queue fills behind
        rest = [pool.submit(_predict, s, "toy:embed", [[i, 0, 0, 0]]) for i in range(6)]
        codes = [f.result().status_code for f in rest]
        assert slow.result().status_code == 200
    refused = [f.result() for f in rest if f.result().status_code == 503]
    assert codes.count(200) == 2 and len(refused) == 4, codes
    assert refused[0].headers["retry-after"] == "1"
    assert "queued" in refused[0].json()["error"]["message"]


def test_body_too_large_is_413(server_factory):
    s = server_factory("toy:embed", "--max-body-mb", "0.001")
    big = {"inputs": [[1, 2, 3, 4]] * 200}
    r = _predict(s, "toy:embed", big["inputs"])
    assert r.status_code == 413 and "larger than" in r.json()["error"]["message"]

    def chunks():  # no Content-Length: counted while read
        body = json.dumps(big).encode()
        for i in range(0, len(body), 256):
            yield body[i : i + 256]

    r = s.client.post("/v1/models/toy:embed/predict", content=chunks())
    assert r.status_code == 413
    assert _predict(s, "toy:embed", [[1, 2, 3, 4]]).status_code == 200


def test_timeout_is_504(server_factory):
    s = server_factory("toy:embed", "--timeout-s", "0.5")
    r = _predict(s, "toy:embed", [[777, 0, 0, 0]])
    assert r.status_code == 504 and "0.5 s" in r.json()["error"]["message"]
    time.sleep(3)  # the worker finishes the slow call (its result is dropped), then serves again
    assert _predict(s, "toy:embed", [[1, 2, 3, 4]]).status_code == 200


def test_bearer_token_is_401_without_it(server_factory):
    s = server_factory("toy:embed", env={"FMHUB_API_KEY": "from-env"})
    assert _predict(s, "toy:embed", [[1, 2, 3, 4]]).status_code == 401
    r = _predict(s, "toy:embed", [[1, 2, 3, 4]], headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    ok = _predict(s, "toy:embed", [[1, 2, 3, 4]], headers={"Authorization": "Bearer from-env"})
    assert ok.status_code == 200
    assert s.client.get("/health").status_code == 200  # liveness needs no token
    flag = server_factory("toy:embed", "--api-key", "from-flag")
    assert flag.client.get("/v1/models").status_code == 401
    assert flag.client.get("/v1/models", headers={"Authorization": "Bearer from-flag"}).json()


def test_sigterm_finishes_in_flight_requests(server_factory):
    s = server_factory("toy:embed")
    with cf.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(_predict, s, "toy:embed", [[777, 1, 1, 1]])
        time.sleep(0.5)
        s.proc.send_signal(signal.SIGTERM)
        r = slow.result()
    assert r.status_code == 200 and len(r.json()["results"][0]) == 8
    # uvicorn re-raises the signal once it has shut down cleanly, so the exit is "killed by TERM"
    assert s.proc.wait(30) in (0, -signal.SIGTERM), s.output()


def test_cli_refuses_bad_settings_and_names(capsys, toy_hub):
    from fmhub.cli import main

    assert main(["serve", "toy:embed", "--max-batch", "0"]) == 2
    assert "max_batch" in capsys.readouterr().err
    assert main(["serve", "a=toy:embed", "a=toy:classify"]) == 2
    assert "served as 'a'" in capsys.readouterr().err


def test_metrics_are_prometheus_text(toy_server):
    _predict(toy_server, "toy:embed", [[1, 2, 3, 4]])
    text = toy_server.client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    body = text.text
    for name, kind in [
        ("fmhub_requests_total", "counter"),
        ("fmhub_request_errors_total", "counter"),
        ("fmhub_queue_depth", "gauge"),
        ("fmhub_batch_size", "histogram"),
        ("fmhub_request_latency_seconds", "histogram"),
    ]:
        assert f"# TYPE {name} {kind}" in body
    assert re.search(
        r'fmhub_request_latency_seconds_bucket\{model="toy:embed",'
        r'endpoint="predict",le="\+Inf"\} \d+',
        body,
    )


# -- generation: completions and chat, with server-sent events -----------------------------------


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    tt = pytest.importorskip("fmhub_transformers.testing")
    return tt.build_tiny_generative(tmp_path_factory.mktemp("gpt2") / "gpt2", "gpt2")


@pytest.fixture(scope="module")
def llama_folder(gpt2_folder, tmp_path_factory):
    from fmhub_transformers.testing import build_tiny_generative

    return build_tiny_generative(tmp_path_factory.mktemp("llama") / "llama", "llama")


def _events(response) -> list:
    out = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_completions_equal_the_model_and_stream_adds_up(families_server, gpt2_folder):
    lm = fmhub.load(gpt2_folder, device="cpu")
    expected = lm("The capital of France is", max_new_tokens=8)
    body = {"model": "lm", "prompt": "The capital of France is", "max_tokens": 8}
    r = families_server.client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "text_completion" and data["choices"][0]["text"] == expected.text
    assert data["choices"][0]["finish_reason"] == expected.finish_reason
    assert data["usage"]["completion_tokens"] == expected.completion_tokens
    streamed = families_server.client.post("/v1/completions", json={**body, "stream": True})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = _events(streamed)
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == expected.text
    assert events[-2]["choices"][0]["finish_reason"] == expected.finish_reason
    many = families_server.client.post(
        "/v1/completions", json={**body, "prompt": ["Once", "In 1969,"]}
    )
    assert [c["text"] for c in many.json()["choices"]] == [
        g.text for g in lm.predict(["Once", "In 1969,"], max_new_tokens=8)
    ]


def test_chat_completions_with_the_openai_client(families_server, llama_folder):
    openai = pytest.importorskip("openai")
    lm = fmhub.load(llama_folder, device="cpu")
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour."},
    ]
    expected = lm(messages, max_new_tokens=6).text
    client = openai.OpenAI(base_url=families_server.url + "/v1", api_key="unused")
    reply = client.chat.completions.create(model="chat", messages=messages, max_tokens=6)
    assert reply.choices[0].message.content == expected
    assert reply.choices[0].message.role == "assistant"
    pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="chat", messages=messages, max_tokens=6, stream=True
        )
    ]
    assert "".join(pieces) == expected
    with pytest.raises(openai.UnprocessableEntityError, match="no chat template"):
        client.chat.completions.create(model="lm", messages=messages, max_tokens=6)
    with pytest.raises(openai.BadRequestError, match="text-generation"):
        client.completions.create(model="toy:embed", prompt="x")
    bad = families_server.client.post(
        "/v1/completions", json={"model": "lm", "prompt": "x", "max_tokens": 0, "stream": True}
    )
    assert bad.status_code == 422, bad.text
