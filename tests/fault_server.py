"""A fault-injecting OpenAI-compatible chat-completions server for the synthesis tests and benchmark.

``FaultServer`` runs the standard library's ``ThreadingHTTPServer`` on 127.0.0.1 (a free port) in a daemon
thread. ``POST /v1/chat/completions`` answers with the next queued fault, if any: an HTTP status such as
``429`` or ``500`` (with ``Retry-After: 0``), ``hang`` (sleeps ``hang_s``, past the client's timeout, then
answers), ``malformed`` (a 200 whose JSON body is cut short) or ``empty`` (a 200 without choices);
otherwise, after ``latency_s``, a normal completion written by ``answer(messages, seed)``. The default
answerer, :func:`toy_answer`, reads the prompt of every task (:mod:`tasks`: the task modules' templates) and
judges passages by how many query words they contain, which on :mod:`tasks.toy` data is exactly the relevance
grade (a yes/no judgement says "relevant" when a passage shares a word with the query).
Answers depend only on the prompt and the seed, so reruns agree.

Hand-written because the tests need to control faults request by request; the only OpenAI-compatible
servers around (vLLM) cannot inject faults.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answerer = Callable[[list[dict[str, str]], int], str]
_LISTED = re.compile(r"^\[(\d+)\]\.? (.*)$", re.MULTILINE)
_JUDGED = [  # yes/no templates (tasks.yesno): query and document lines, answer prefix, (relevant, not)
    (re.compile(r"^<Query>: (.*)\n<Document>: (.*)$", re.M), "<think>\n\n</think>\n\n", ("yes", "no")),
    (re.compile(r"^query: (.*)\ndocument: (.*)$", re.M), "", ("1", "0")),
]


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def _overlap(query: str, passage: str) -> int:
    return len(_words(query) & _words(passage))


def _between(text: str, start: str, end: str) -> str:
    head = text.split(start, 1)[-1]
    return head.split(end, 1)[0].strip()


def _ranked(query: str, passages: list[str]) -> list[int]:
    """1-based passage ids by decreasing query-word overlap, ties in prompt order."""
    return sorted(range(1, len(passages) + 1), key=lambda i: -_overlap(query, passages[i - 1]))


def toy_answer(messages: list[dict[str, str]], seed: int) -> str:
    """A well-formed teacher answer to any task's prompt (see the module docstring)."""
    user = messages[-1]["content"]
    passages = [text for _, text in _LISTED.findall(user)]
    if "Rank the passages based on their relevance" in user:
        query = _between(user, "Search Query: ", ".\nRank the")
        order = " > ".join(f"[{i}]" for i in _ranked(query, passages))
        return f"<think>count query words (seed {seed})</think>\n<answer>{order}</answer>"
    if "which of the following documents is most relevant" in user:
        query = _between(user, 'Given the query: "', '", which')
        return f"<think>most query words</think> <answer>[{_ranked(query, passages)[0]}]</answer>"
    if "relevance score of 0 to 10" in user:
        grade = _overlap(_between(user, "Here is the query: ", "\n"), _between(user, "document: ", "\nAfter"))
        return f"<think>overlap {grade}</think><answer>{min(10, 4 * grade + seed % 3)}</answer>"
    if "[Begin of Query]" in user:
        query, doc = _between(user, "[Begin of Query]", "[End"), _between(user, "[Begin of Document]", "[End")
        return f"Analysis: overlap.\n<score>{min(100, 40 * _overlap(query, doc) + seed % 7)}</score>"
    if "Score these documents" in user:
        query = _between(user, "Query:\n", "\n\nDocuments:")
        scores = {f"[{i}]": 4 * _overlap(query, p) + seed % 2 for i, p in enumerate(passages, start=1)}
        return f"<reason>overlap</reason>\n<answer>\n```json\n{json.dumps(scores)}\n```\n</answer>"
    for pattern, prefix, (yes, no) in _JUDGED:
        if judged := pattern.search(user):
            return prefix + (yes if _overlap(*judged.groups()) else no)
    numbers = [int(n) for n in re.findall(r"\d+", user.split("\nAfter completing")[0])]
    return f"<think>add them</think> <answer>{sum(numbers)}</answer>"


def completion_body(text: str, prompt_tokens: int) -> dict[str, Any]:
    """A chat.completions response holding ``text``; tokens are counted as words."""
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split())}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "toy-teacher",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage,
    }


class _Server(ThreadingHTTPServer):
    """Daemon request threads and a listen backlog that holds a burst of concurrent connections."""

    daemon_threads = True
    request_queue_size = 256


class FaultServer:
    """The server; use as a context manager, queue faults with :meth:`inject`, read :attr:`served`."""

    def __init__(self, answer: Answerer = toy_answer, latency_s: float = 0.0, hang_s: float = 3.0) -> None:
        self.answer, self.latency_s, self.hang_s = answer, latency_s, hang_s
        self.faults: deque[str] = deque()
        self.served: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), self._handler_class())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def inject(self, faults: Iterable[str]) -> None:
        """Queue faults for the next requests, one each, in order."""
        with self.lock:
            self.faults.extend(faults)

    def _next(self) -> str:
        with self.lock:
            kind = self.faults.popleft() if self.faults else "ok"
            self.served[kind] += 1
            return kind

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: no TCP handshake and thread per request
            disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:
                """Silence the per-request log lines."""

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                server._respond(self, server._next(), body)

        return Handler

    def _respond(self, handler: BaseHTTPRequestHandler, kind: str, body: dict[str, Any]) -> None:
        if kind == "hang":
            time.sleep(self.hang_s)
        elif self.latency_s:
            time.sleep(self.latency_s)
        if kind.isdigit():
            self._send(handler, int(kind), b'{"error": {"message": "injected fault"}}', {"Retry-After": "0"})
            return
        if kind == "malformed":
            self._send(handler, 200, b'{"id": "chatcmpl-test", "choices": [{"index": 0, "mess')
            return
        if kind == "empty":
            self._send(
                handler, 200, json.dumps({"id": "x", "object": "chat.completion", "choices": []}).encode()
            )
            return
        messages = body.get("messages", [])
        text = self.answer(messages, int(body.get("seed") or 0))
        prompt_tokens = sum(len(m.get("content", "").split()) for m in messages)
        self._send(handler, 200, json.dumps(completion_body(text, prompt_tokens)).encode())

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, status: int, payload: bytes, headers: dict | None = None
    ) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a "hang" fault past its timeout)


def main() -> None:
    """``python -m tests.fault_server [--latency S]``: serve in this process, print the base URL, run until
    killed (the benchmark runs the server apart from its client, as a real endpoint would be)."""
    import argparse

    parser = argparse.ArgumentParser(description="fault-injecting OpenAI-compatible test server")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    args = parser.parse_args()
    with FaultServer(latency_s=args.latency) as server:
        print(server.base_url, flush=True)
        server.thread.join()


if __name__ == "__main__":
    main()
