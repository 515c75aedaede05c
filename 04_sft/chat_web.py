"""Chat in the browser: one page and a streaming endpoint, on the standard library's http.server only.

    python 04_sft/chat.py --web                     # then open http://127.0.0.1:8000
    python 04_sft/chat.py --web --port 8080         # another port
    python 06_quantize/chat_quantized.py --web      # the quantized models too (chapter 06 adds their loader)

This is plumbing around chat.py's ChatSession, which does the lesson's work: it renders the conversation
with the render_chat() that training used, drops the oldest exchanges when the context is full, and
samples the reply with GPT.stream(). What is new here is how the reply travels: as server-sent events
(SSE), one HTTP response that stays open and carries a small message per decoded piece of text,

    data: {"text": " Sher"}

    data: {"text": "by."}

    data: {"done": true, "ended": true, "dropped": 0}

so the page shows each piece as soon as the model has sampled it.

Routes:
    GET  /        the page, chat_web.html (inline CSS and JavaScript: it works without a network)
    GET  /models  {"models": [names], "temperature": 0.7, "top_k": 50, "max_new_tokens": 128}
    POST /chat    {"model": name, "messages": [{"role": "user", "content": "Hi"}, ...],
                   "temperature": 0.7, "top_k": 50, "max_new_tokens": 128, "seed": null}  (all but
                   messages optional; the last message is the user's)
                  -> 200 text/event-stream of {"notice": str} (older messages dropped), {"text": str},
                     {"error": str} (the newest message alone does not fit the context), and last
                     {"done": true, "ended": bool, "dropped": n}: ended is False when the reply hit
                     max_new_tokens before <|end|>; the n oldest messages sent did not fit the context.
                  -> 400 {"error": reason} for a bad body: not JSON, no messages, an unknown model, a
                     temperature or top-k out of range.

The server keeps no conversation: the page sends the whole history each turn, as the model needs it.
Replies are generated ONE AT A TIME: ThreadingHTTPServer gives each connection a thread (the page loads
while a reply streams), and a lock lets one reply generate at a time; the others wait their turn. There
is one model on one device, so two replies at once would only share it. A client that leaves mid-reply
(a closed tab, the page's Stop button) ends that reply, and the server goes on serving.
"""
import errno
import json
import math
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import cli  # noqa: E402  (chapter 01: one-line messages)
from chat_session import MAX_NEW_TOKENS, TEMPERATURE, TOP_K, ChatSession  # noqa: E402  (this chapter)
from chat_format import check_messages  # noqa: E402  (this chapter)

PAGE = Path(__file__).with_name("chat_web.html")
MAX_BODY = 1 << 20  # bytes: a conversation that fits a small model's context is a few kB
FIELDS = {"model", "messages", "temperature", "top_k", "max_new_tokens", "seed"}


def _number(request, name, default, kind, ok, what):
    """request[name] checked to be a finite `kind` for which ok(value) holds; default when absent."""
    if name not in request:
        return default
    value = request[name]
    if value is None and name == "seed":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ValueError(f"{name} must be {what}, got {value!r:.40}")
    if not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name} {value!r} is out of range: it must be {what}")
    return kind(value)


def parse_chat_request(body, model_names, settings):
    """The body of POST /chat (bytes) -> a dict with every field checked and the defaults filled in.

    model_names: the models the server offers (the first is the default); settings: the defaults of
    temperature, top_k, max_new_tokens and seed. Raises ValueError naming what is wrong (sent as HTTP 400).
    """
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"the body is not JSON ({error})") from None
    if not isinstance(request, dict):
        raise ValueError('the body must be a JSON object: {"messages": [{"role": "user", "content": "Hi"}], ...}')
    unknown = sorted(set(request) - FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}: the fields are {sorted(FIELDS)}")
    if "messages" not in request:
        raise ValueError('missing "messages": a list of {"role": ..., "content": ...}, the last one the user\'s')
    messages = request["messages"]
    check_messages(messages)  # ValueError saying which message is wrong and how
    if any(not isinstance(message["content"], str) for message in messages):
        raise ValueError("every message's content must be a string")
    if messages[-1]["role"] != "user":
        raise ValueError(f"the last message must be the user's (the model answers it), "
                         f"not the {messages[-1]['role']}'s")
    model = request.get("model", model_names[0])
    if model not in model_names:
        raise ValueError(f"unknown model {model!r:.80}: choose one of {list(model_names)}")
    return {
        "model": model,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "temperature": _number(request, "temperature", settings["temperature"], float, lambda v: v >= 0,
                               "a number >= 0 (0 = greedy)"),
        "top_k": _number(request, "top_k", settings["top_k"], int, lambda v: v >= 1, "an integer >= 1"),
        "max_new_tokens": _number(request, "max_new_tokens", settings["max_new_tokens"], int, lambda v: v >= 1,
                                  "an integer >= 1"),
        "seed": _number(request, "seed", settings.get("seed"), int, lambda v: v >= 0, "an integer >= 0 or null"),
    }


def stream_reply(model, tokenizer, request, send):
    """Answer request["messages"] with chapter 04's ChatSession, calling send(event) for each event.

    The events are the ones the module docstring lists: {"notice"}, {"text"} per decoded piece,
    {"error"} when the newest message alone is too long (as in the REPL, nothing is generated), and
    {"done", "ended", "dropped"} last. Returns the reply (str, None after an error).
    """
    messages = request["messages"]
    session = ChatSession(model, tokenizer, request["temperature"], request["top_k"], request["max_new_tokens"],
                          request["seed"], notify=lambda notice: send({"notice": notice.strip("[]\n")}))
    session.history = list(messages[:-1])
    try:
        reply, ended = session.respond(messages[-1]["content"], on_text=lambda piece: send({"text": piece}))
    except ValueError as error:  # the newest message does not fit even alone: the REPL says so too
        send({"error": str(error)})
        return None
    kept = len(session.history) - 1  # the request's messages the session kept, the reply excluded
    send({"done": True, "ended": ended, "dropped": len(messages) - kept})
    return reply


class ChatServer(ThreadingHTTPServer):
    """The HTTP server: the models it offers, the settings, and the lock that serialises generation.

    models: {name: (path, load)} with load(path, device) -> (model, tokenizer); the first is the default.
    One model is kept loaded at a time (the last one asked for). port 0 picks a free port (see
    server_address). Raises OSError with the fix when the port is taken.
    """

    daemon_threads = True  # a stream still open does not keep the process alive after Ctrl-C

    def __init__(self, models, host="127.0.0.1", port=8000, device="cpu", settings=None):
        if not models:
            raise ValueError("no models to serve: give at least one {name: (path, load)}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is not a TCP port: choose one from 1 to 65535 (0 = any free port)")
        self.models, self.device = dict(models), device
        self.settings = {"temperature": TEMPERATURE, "top_k": TOP_K, "max_new_tokens": MAX_NEW_TOKENS, "seed": None,
                         **(settings or {})}
        self.lock = threading.Lock()  # one generation at a time
        self.loaded = (None, None, None)  # (name, model, tokenizer)
        try:
            super().__init__((host, port), ChatHandler)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise OSError(f"port {port} on {host} is taken (is a chat page already running there?): pass "
                              f"--port with another number, e.g. --port {port + 1}") from None
            raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None

    def load(self, name):
        """(model, tokenizer) of the model called name, loading it unless it is the one in memory.
        Call with self.lock held."""
        if self.loaded[0] != name:
            self.loaded = (None, None, None)  # free the previous model before loading the next
            path, load = self.models[name]
            self.loaded = (name, *load(path, self.device))
        return self.loaded[1:]


class ChatHandler(BaseHTTPRequestHandler):
    """One request: the page, the list of models, or a streamed reply."""

    server_version = "bytes2chat"

    def do_GET(self):
        if self.path in ("/", "/index.html"):
            self.send_body(200, PAGE.read_bytes(), "text/html; charset=utf-8")
        elif self.path == "/models":
            settings = {key: self.server.settings[key] for key in ("temperature", "top_k", "max_new_tokens")}
            self.send_json(200, {"models": list(self.server.models), **settings})
        else:
            self.send_json(404, {"error": f"no page {self.path}: open / for the chat"})

    def do_POST(self):
        if self.path != "/chat":
            return self.send_json(404, {"error": f"no endpoint {self.path}: POST /chat"})
        try:
            request = parse_chat_request(self.read_body(), list(self.server.models), self.server.settings)
        except ValueError as error:
            return self.send_json(400, {"error": str(error)})
        try:
            with self.server.lock:
                try:
                    model, tokenizer = self.server.load(request["model"])
                except (OSError, ValueError) as error:
                    return self.send_json(500, {"error": cli.one_line(error)})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                stream_reply(model, tokenizer, request, self.send_event)
        except (BrokenPipeError, ConnectionResetError):  # the client left: stop this reply, keep serving
            self.log_message("the client closed the connection mid-reply: reply stopped")

    def read_body(self):
        """The request body (bytes); ValueError for a missing or oversized one."""
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise ValueError("the request needs a Content-Length header and a JSON body") from None
        if not 0 <= length <= MAX_BODY:
            raise ValueError(f"the body is {length} bytes; at most {MAX_BODY} are accepted")
        return self.rfile.read(length)

    def send_event(self, event):
        """One server-sent event: a line "data: <JSON>" and a blank line. wfile is unbuffered: it leaves now."""
        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode("utf-8"))

    def send_json(self, status, payload):
        self.send_body(status, json.dumps(payload).encode("utf-8"), "application/json")

    def send_body(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(models, host="127.0.0.1", port=8000, device="cpu", settings=None):
    """Load the first model (a missing or broken checkpoint fails here, before anyone connects), then
    serve until Ctrl-C. models: {name: (path, load)}, as ChatServer takes them."""
    server = ChatServer(models, host, port, device, settings)
    try:
        with server.lock:
            server.load(next(iter(server.models)))
        url = f"http://{host}:{server.server_address[1]}/"
        print(f"chat in the browser: open {url}  (models: {', '.join(server.models)}; Ctrl-C stops)", flush=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            print(f"[listening on {host}: anyone who can reach this machine can use the model, no password]")
        server.serve_forever()
    except KeyboardInterrupt:
        print("\n[server stopped]")
    finally:
        server.server_close()
