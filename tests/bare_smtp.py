"""A bare SMTP server for the transport's tests: it follows a script and can say what aiosmtpd
will not (a 421 at the greeting, a delayed greeting, a reply after the final dot that never
comes, a connection closed while idle, a 5xx to HELO), and it records every command it got."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Script:
    """How a bare SMTP server answers: the greeting and EHLO reply of each connection in turn
    (the last one repeats), the replies to HELO, MAIL, RCPT, DATA and RSET in turn (``"250 ok"``,
    ``"354 go ahead"`` once a verb's list is used up; None: hang up without a word), and what
    follows each message's final dot: a reply after a delay, or (None) hanging up. The first
    ``idle_drops`` connections are closed by the server right after their first message, as an
    idle timeout would. It records each connection's start and end and every command verb."""

    greetings: list[str] = field(default_factory=lambda: ["220 bare.example.com ESMTP"])
    ehlos: list[str] = field(default_factory=lambda: ["250 bare.example.com"])
    replies: dict[str, list[str | None]] = field(default_factory=dict)
    after_dot: list[tuple[float, str | None]] = field(default_factory=list)
    greeting_delay_s: float = 0.0
    idle_drops: int = 0
    connections: list[float] = field(default_factory=list)
    ended: list[float] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)


PIPELINING = "250-bare.example.com\r\n250 PIPELINING"


class BareServer:
    """A blocking SMTP server on a thread, one connection at a time, following a Script;
    TLS from the first byte when given a server context."""

    def __init__(
        self, script: Script, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self.script = script
        self.host = host
        self.tls = tls
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{'smtps' if self.tls else 'smtp'}://{self.host}:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                with conn:
                    self._talk(conn)
            except OSError:
                pass
            self.script.ended.append(time.monotonic())

    def _talk(self, conn: socket.socket) -> None:
        script = self.script
        index = len(script.connections)
        script.connections.append(time.monotonic())
        reader = conn.makefile("rb")

        def say(line: str) -> None:
            conn.sendall(line.encode() + b"\r\n")

        def scripted(verb: str, default: str) -> str | None:
            queued = script.replies.get(verb)
            return queued.pop(0) if queued else default

        time.sleep(script.greeting_delay_s)
        greeting = script.greetings[min(index, len(script.greetings) - 1)]
        say(greeting)
        if greeting.startswith("421"):
            return
        for raw in reader:
            command = raw.decode().strip().upper()
            verb = command.split(" ", 1)[0].split(":", 1)[0]
            script.commands.append(verb)
            reply: str | None
            if verb == "EHLO":
                reply = script.ehlos[min(index, len(script.ehlos) - 1)]
                say(reply)
                if reply.startswith("421"):
                    return
            elif verb in ("HELO", "MAIL", "RCPT", "RSET", "NOOP"):
                reply = scripted(verb, "250 ok")
                if reply is None:
                    return
                say(reply)
                if reply.startswith("421"):
                    return  # RFC 5321: 421 closes the transmission channel
            elif verb == "DATA":
                reply = scripted(verb, "354 go ahead")
                if reply is None:
                    return
                say(reply)
                if not reply.startswith("354"):
                    continue
                lines = []
                for line in reader:
                    if line == b".\r\n":
                        break
                    lines.append(line)
                script.messages.append(b"".join(lines))
                delay_s, reply = script.after_dot.pop(0) if script.after_dot else (0.0, "250 ok")
                time.sleep(delay_s)
                if reply is None:
                    return  # hang up: the message is taken, its reply never comes
                say(reply)
                if index < script.idle_drops:
                    return  # the server closes the idle connection
            elif verb == "QUIT":
                say("221 bye")
                return
            else:
                say("502 5.5.2 command not recognized")

    def close(self) -> None:
        self.sock.close()
