"""A real HTTP server for an ASGI app: uvicorn on a socket bound here, so that the port is
known (``port=0`` picks a free one) and a busy port is a one-line error before anything runs.

``with Server(app) as s:`` serves from a background thread until the block ends (the
pipeline's oracle judge, tests); :meth:`Server.run` serves in the foreground until Ctrl-C
(``r1lab serve``).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from r1lab.errors import UserError

__all__ = ["Server"]

# How long a stopping server waits for requests still being answered before it cancels them.
_GRACE_SECONDS = 5


class Server:
    """uvicorn serving ``app`` on ``host:port``; the socket is bound on construction.

    ``start_timeout`` bounds how long ``__enter__`` waits for uvicorn to accept connections.
    Logging is quiet (warnings and errors only) and leaves the host program's logging setup
    alone.
    """

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, start_timeout: float = 30.0
    ) -> None:
        import uvicorn

        self.host = host
        self.start_timeout = start_timeout
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # as uvicorn does itself: a port left in TIME_WAIT by a stopped server is free
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
        except OSError as e:
            self._sock.close()
            raise UserError(f"cannot serve on {host}:{port} ({e.strerror or e})") from None
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            log_config=None,
            timeout_graceful_shutdown=_GRACE_SECONDS,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://host:port/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def run(self) -> None:
        """Serve in this thread until Ctrl-C (or SIGTERM) stops the server."""
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self._sock.close()

    def __enter__(self) -> Server:
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"uvicorn:{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._sock.close()
                raise RuntimeError(f"the server on {self.host}:{self.port} stopped while starting")
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(
                    f"the server on {self.host}:{self.port} did not start within "
                    f"{self.start_timeout:g} s"
                )
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=_GRACE_SECONDS + 5)
            self._thread = None
        self._sock.close()
