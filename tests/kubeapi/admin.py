"""JSON/HTTP admin endpoint of the test API server, for tests in other processes or hosts.

Plain HTTP on its own port (loopback by default) so it keeps answering while the API port
is "down". Routes (all JSON):
  GET    /state                          object names per resource, rv, compacted rv
  GET    /requests                       recent API requests (path, query, user)
  GET    /objects/{resource}             all stored objects of a resource
  GET    /objects/{resource}/{ns}/{name} one object (ns "-" for cluster-scoped objects)
  POST   /objects/{resource}             body: object -> stored object (create or update)
  DELETE /objects/{resource}/{ns}/{name} ns "-" for cluster-scoped objects
  POST   /batch                          {"ops": [{"op": "upsert"|"delete", ...}]}
  POST   /compact                        {"up_to": rv?}
  POST   /expire-tokens
  POST   /drop-streams                   {"mid_event": bool}
  POST   /stop, POST /start              take the API port down / bring it back
  POST   /options                        {"bookmark_interval": s, "refuse_watch_list": b, ...}
"""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.kubeapi.server import KubeAPIServer
from tests.kubeapi.state import ApiStatusError


class _AdminHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _AdminServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n)) if n else {}

    def _dispatch(self, method: str) -> None:
        api = self.server.api
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        try:
            body = self._body() if method != "GET" else {}
            self._reply(200, _route(api, method, parts, body))
        except ApiStatusError as err:
            self._reply(err.code, err.status())
        except (KeyError, ValueError, TypeError) as err:
            self._reply(400, {"error": f"{type(err).__name__}: {err}"})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


def _route(api: KubeAPIServer, method: str, parts: list[str], body: Any) -> Any:
    match method, parts:
        case "GET", ["state"]:
            return api.state.snapshot() | {"running": api.running, "url": api.url}
        case "GET", ["requests"]:
            return [dataclasses.asdict(r) for r in list(api.requests)]
        case "GET", ["objects", resource]:
            return api.state.items(resource, None)
        case "GET", ["objects", resource, ns, name]:
            return api.state.get(resource, "" if ns == "-" else ns, name)
        case "POST", ["objects", resource]:
            return api.upsert(resource, body)
        case "DELETE", ["objects", resource, ns, name]:
            return api.delete(resource, "" if ns == "-" else ns, name)
        case "POST", ["batch"]:
            for op in body["ops"]:
                if op["op"] == "upsert":
                    api.upsert(op["resource"], op["object"])
                else:
                    api.delete(op["resource"], op.get("namespace", ""), op["name"])
            return {"resourceVersion": api.state.rv}
        case "POST", ["compact"]:
            return {"compacted": api.compact(body.get("up_to"))}
        case "POST", ["expire-tokens"]:
            api.expire_tokens()
            return {}
        case "POST", ["drop-streams"]:
            api.drop_streams(bool(body.get("mid_event")))
            return {}
        case "POST", ["stop"]:
            api.stop()
            return {"running": False}
        case "POST", ["start"]:
            api.start()
            return {"running": True}
        case "POST", ["options"]:
            for k, v in body.items():
                if not hasattr(api.options, k):
                    raise KeyError(k)
                setattr(api.options, k, v)
            return dataclasses.asdict(api.options)
    raise ApiStatusError(404, "NotFound", "/" + "/".join(parts))


class _AdminServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], api: KubeAPIServer) -> None:
        self.api = api
        super().__init__(addr, _AdminHandler)


class AdminServer:
    def __init__(self, api: KubeAPIServer, host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd = _AdminServer((host, port), api)
        self.port = self._httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
