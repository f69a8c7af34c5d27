"""A loopback TCP proxy that can lose a COMMIT's reply.

Armed with :meth:`CommitCutter.arm`, it forwards the next client message that
carries ``COMMIT`` to the server, waits for the server to act on it, and then
closes both sockets before any reply reaches the client: the transaction is
committed, but the client cannot know. With ``refuse=True`` it then also cuts
every other connection and refuses new ones (closing them at once) until
:meth:`CommitCutter.allow` is called.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class CommitCutter:
    """Forwards 127.0.0.1:<port> to ``target``; see the module text."""

    SETTLE = 0.3
    """Seconds between forwarding the COMMIT and cutting (the server commits)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed = False
        self._refusing = False
        self._refuse_after_cut = False
        self.cuts = 0
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, *, refuse: bool = False) -> None:
        with self._lock:
            self._armed = True
            self._refuse_after_cut = refuse

    def allow(self) -> None:
        with self._lock:
            self._refusing = False

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        for sock in list(self._sockets):
            _close(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
            if refusing:
                _close(client)
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                _close(client)
                continue
            self._sockets += [client, server]
            cut = threading.Event()  # set: the server's replies are dropped
            threading.Thread(
                target=self._upstream, args=(client, server, cut), daemon=True
            ).start()
            threading.Thread(
                target=self._downstream, args=(server, client, cut), daemon=True
            ).start()

    def _upstream(
        self, client: socket.socket, server: socket.socket, cut: threading.Event
    ) -> None:
        try:
            while data := client.recv(65536):
                if b"COMMIT" in data:
                    with self._lock:
                        if self._armed:
                            self._armed = False
                            self._refusing = self._refuse_after_cut
                            cut.set()  # before the server can answer
                if cut.is_set():
                    server.sendall(data)
                    time.sleep(self.SETTLE)
                    self.cuts += 1
                    if self._refusing:  # and every other open connection
                        for sock in list(self._sockets):
                            _close(sock)
                    break
                server.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(server)

    def _downstream(
        self, server: socket.socket, client: socket.socket, cut: threading.Event
    ) -> None:
        try:
            while (data := server.recv(65536)) and not cut.is_set():
                client.sendall(data)
        except OSError:
            pass
        finally:
            if not cut.is_set():
                _close(client)
                _close(server)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
