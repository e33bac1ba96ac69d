"""A low-overhead HTTP/1.1 load generator over asyncio streams, for 127.0.0.1 only.

Each of ``concurrency`` clients keeps one keep-alive connection and sends the same pre-encoded
request again as soon as the previous answer is read, until ``count`` requests are done or
``seconds`` have passed (both bounds always apply). It parses only the status line, the
headers it needs (Content-Length, X-Variant) and skips the body, so it costs far less CPU per
request than httpx; its own CPU time is measured and reported so a reader can tell whether the
generator was the bottleneck.

The serving tests use it for traffic of a few thousand requests; the benchmark
(tests/benchmarks/bench_serve.py) runs it as a script, in a process of its own:
    python tests/serve/loadgen.py --port 8080 --path /predict --body-file req.json \\
        --concurrency 8 --count 5000 --seconds 30
prints one JSON line: requests, errors, status counts, variants, rps, p50/p90/p99/max ms, cpu_seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from typing import Any

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: keep-alive",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    if length:
        await reader.readexactly(length)
    return status, headers


async def run_load(
    host: str, port: int, requests: list[bytes], *, concurrency: int, count: int, seconds: float, keyed: bool = False
) -> dict[str, Any]:
    """``requests``: pre-encoded requests, used round-robin (one per key when ``keyed``)."""
    if host not in LOOPBACK:
        raise SystemExit(f"refusing to send load to {host}: loopback only")
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    variants: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    state = {"sent": 0}
    deadline = time.perf_counter() + seconds
    per_key_variant: dict[int, set[str]] = {}

    async def client(index: int) -> None:
        reader = writer = None
        while state["sent"] < count and time.perf_counter() < deadline:
            slot = state["sent"]
            state["sent"] += 1
            payload = requests[slot % len(requests)]
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            start = time.perf_counter()
            try:
                writer.write(payload)
                status, headers = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                failures[type(exc).__name__] += 1
                statuses[0] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            latencies.append(time.perf_counter() - start)
            statuses[status] += 1
            variant = headers.get(b"x-variant", b"").decode()
            if variant:
                variants[variant] += 1
                if keyed:
                    per_key_variant.setdefault(slot % len(requests), set()).add(variant)
            if headers.get(b"connection", b"").lower() == b"close":
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    latencies.sort()

    def pct(q: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 3)

    ok = statuses.get(200, 0)
    out = {
        "requests": sum(statuses.values()),
        "ok": ok,
        "errors": sum(v for k, v in statuses.items() if k != 200),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "failures": dict(failures),
        "variants": dict(variants),
        "seconds": round(wall, 3),
        "rps": round(ok / wall, 1) if wall else None,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
        "cpu_seconds": round((cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), 3),
    }
    if keyed:
        out["keys_on_two_variants"] = sum(1 for v in per_key_variant.values() if len(v) > 1)
        out["per_key"] = {str(k): sorted(v) for k, v in per_key_variant.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/predict")
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--keys", type=int, default=0, help="send X-Request-ID key-0..key-N-1 round-robin and check stickiness"
    )
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    body = open(args.body_file, "rb").read()
    if args.keys:
        requests = [
            build_request(args.host, args.port, args.path, body, {"X-Request-ID": f"key-{i}"}) for i in range(args.keys)
        ]
    else:
        requests = [build_request(args.host, args.port, args.path, body)]
    if args.uvloop:
        import uvloop

        uvloop.install()
    result = asyncio.run(
        run_load(
            args.host,
            args.port,
            requests,
            concurrency=args.concurrency,
            count=args.count,
            seconds=args.seconds,
            keyed=bool(args.keys),
        )
    )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
