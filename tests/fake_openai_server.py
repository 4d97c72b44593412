"""A stand-in OpenAI-compatible completions server for the engine tests (stdlib only).

Started as ``python fake_openai_server.py ... --port P ...`` (unknown arguments are
ignored, so it also stands in for ``python -m vllm.entrypoints.openai.api_server``
through ``tests/fake_vllm/python``). Behaviour from the environment:

- ``FAKE_NEVER_HEALTHY=1``: ``/health`` answers 503 forever;
- ``FAKE_DIE_AFTER=N``: the process exits (as if killed) after answering N completions;
- ``FAKE_DELAY_S``: seconds each completion takes (default 0.02); with ``FAKE_DELAY_AFTER=N``, only those
  after the first N (answered at 0.02 s);
- ``FAKE_TOKEN_S``: seconds between two streamed tokens (default 0.002); ``FAKE_CONCURRENT_TOKEN_S``: the same
  while more than one stream is in flight (a server slow under load; default ``FAKE_TOKEN_S``); ``GET /inflight``
  answers how many streams are in flight; ``FAKE_TAIL_S``: seconds from the last streamed token to the end of
  the response (its usage chunk), as a server that finishes a response slowly;
- ``FAKE_HEALTHY_AFTER_S``: ``/health`` answers 503 for that long after the start;
- ``FAKE_DROP_REUSED=1``: a request that arrives on a kept-alive connection is dropped (the socket closed
  without a response), as a server closing an idle connection just as the request arrives does; ``GET
  /dropped`` answers how many were.

Every completion is ``The answer is \\boxed{S}.`` where S is the sum of the integers in the
prompt text (so a few arith problems are right), streamed word by word when asked.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNT = 0
#: completions asked for so far, counted on arrival (COUNT counts them answered): FAKE_DELAY_AFTER=N answers exactly
#: N fast however many arrive at once
ARRIVED = 0
DROPPED = 0
INFLIGHT = 0
STARTED = time.monotonic()
LOCK = threading.Lock()


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def answer(prompt) -> str:
    if isinstance(prompt, list):
        prompt = " ".join(str(t) for t in prompt[-3:])
    nums = [int(n) for n in re.findall(r"\d+", prompt)[-2:]]
    return f" The answer is \\boxed{{{sum(nums)}}}."


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.answered = 0  # requests answered on this connection

    def dropped_as_reused(self) -> bool:
        global DROPPED
        self.answered += 1
        if os.environ.get("FAKE_DROP_REUSED") and self.answered > 1:
            with LOCK:
                DROPPED += 1
            self.close_connection = True
            return True
        return False

    def log_message(self, fmt, *args):  # quiet
        pass

    def send(self, code: int, body: dict | str, ctype: str = "application/json") -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            waking = time.monotonic() - STARTED < env_float("FAKE_HEALTHY_AFTER_S", 0)
            self.send(503 if os.environ.get("FAKE_NEVER_HEALTHY") or waking else 200, {})
        elif self.path == "/inflight":
            self.send(200, {"streams": INFLIGHT})
        elif self.path == "/v1/models":
            self.send(200, {"object": "list", "data": [{"id": "harness", "object": "model"}]})
        elif self.path == "/dropped":
            self.send(200, {"dropped": DROPPED})
        elif self.path == "/version":
            self.send(200, {"version": "fake-1"})
        elif self.path == "/metrics":
            self.send(200, '# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{engine="0"} 0.25\n'
                           'vllm:cache_config_info{block_size="16",cache_dtype="auto",kv_cache_memory_bytes="1024",'
                           'kv_cache_size_tokens="64"} 1.0\n', "text/plain")
        else:
            self.send(404, {"error": "not found"})

    def do_POST(self):
        global COUNT, ARRIVED
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.dropped_as_reused():
            return
        fast_ones = int(os.environ.get("FAKE_DELAY_AFTER") or 0)
        with LOCK:  # streams (the profile's) are not counted, as COUNT does not count them
            if body.get("stream"):
                slow = ARRIVED >= fast_ones
            else:
                ARRIVED += 1
                slow = ARRIVED > fast_ones
        time.sleep(env_float("FAKE_DELAY_S", 0.02) if slow else 0.02)
        text = answer(body["prompt"])
        words = text.split(" ")[: body.get("max_tokens", 64)]
        if body.get("stream"):
            self.stream(body, words)
            return
        self.send(200, {"choices": [{"index": 0, "text": " ".join(words)}],
                        "usage": {"completion_tokens": len(words)}})
        with LOCK:
            COUNT += 1
            die = int(os.environ.get("FAKE_DIE_AFTER", "0") or 0)
            if die and COUNT >= die:
                os._exit(9)


    def stream(self, body: dict, words: list[str]) -> None:
        global INFLIGHT
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        n = max(body.get("min_tokens") or 0, len(words))
        token_s = env_float("FAKE_TOKEN_S", 0.002)
        with LOCK:
            INFLIGHT += 1
        try:
            for i in range(min(n, body.get("max_tokens", n))):
                if i:
                    time.sleep(env_float("FAKE_CONCURRENT_TOKEN_S", token_s) if INFLIGHT > 1 else token_s)
                chunk = {"choices": [{"index": 0, "text": " " + (words[i] if i < len(words) else "x")}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            time.sleep(env_float("FAKE_TAIL_S", 0))
            usage = {"choices": [], "usage": {"completion_tokens": min(n, body.get("max_tokens", n))}}
            self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        except OSError:  # the client went away (a cancelled request)
            pass
        finally:
            with LOCK:
                INFLIGHT -= 1
        self.close_connection = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args, _ = parser.parse_known_args()
    print(f"fake server on {args.host}:{args.port} (pid {os.getpid()})", flush=True)
    print("Using FakeLinearKernel for FakeLinearMethod", flush=True)
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.request_queue_size = 1024  # the harness opens up to batch-size connections at once
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    sys.exit(main())
