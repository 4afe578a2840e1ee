"""A small IMAP4rev1 server for tests: enough of the protocol for imaplib to log in, select,
search, fetch, copy, flag and expunge. It stands in for a mail provider's server, not for any
code of ours."""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, field


@dataclass
class Mailbox:
    """Folders of messages by UID, and the credentials to reach them."""

    username: str = "bounces"
    password: str = "secret"
    folders: dict[str, dict[int, bytes]] = field(default_factory=lambda: {"INBOX": {}})
    deleted: set[int] = field(default_factory=set)
    next_uid: int = 1

    def add(self, raw: bytes, folder: str = "INBOX") -> int:
        uid = self.next_uid
        self.next_uid += 1
        self.folders.setdefault(folder, {})[uid] = raw
        return uid


class ImapServer:
    """Serves a Mailbox on 127.0.0.1:port in a background thread."""

    def __init__(self, mailbox: Mailbox, port: int) -> None:
        self.mailbox = mailbox
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._session, "127.0.0.1", self.port), self._loop
        )
        self._server = future.result(timeout=10)

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        box = self.mailbox
        selected: dict[int, bytes] | None = None
        writer.write(b"* OK IMAP4rev1 test server ready\r\n")
        while line := await reader.readline():
            tag, _, rest = line.decode().rstrip("\r\n").partition(" ")
            command, _, args = rest.partition(" ")
            command = command.upper()
            if command == "UID":
                command, _, args = args.partition(" ")
                command = "UID " + command.upper()
            if command == "CAPABILITY":
                writer.write(b"* CAPABILITY IMAP4rev1\r\n")
            elif command == "LOGIN":
                user, password = [p.strip('"') for p in args.split(" ", 1)]
                if (user, password) != (box.username, box.password):
                    writer.write(f"{tag} NO [AUTHENTICATIONFAILED] bad credentials\r\n".encode())
                    continue
            elif command == "SELECT":
                selected = box.folders.get(args.strip('"'))
                if selected is None:
                    writer.write(f"{tag} NO no such folder\r\n".encode())
                    continue
                writer.write(f"* {len(selected)} EXISTS\r\n* 0 RECENT\r\n".encode())
            elif command == "UID SEARCH" and selected is not None:
                writer.write(
                    ("* SEARCH " + " ".join(map(str, sorted(selected)))).encode() + b"\r\n"
                )
            elif command == "UID FETCH" and selected is not None:
                uid = int(args.split(" ", 1)[0])
                raw = selected[uid]
                writer.write(
                    f"* 1 FETCH (UID {uid} RFC822 {{{len(raw)}}}\r\n".encode() + raw + b")\r\n"
                )
            elif command == "UID COPY" and selected is not None:
                uid_text, folder = args.split(" ", 1)
                box.add(selected[int(uid_text)], folder.strip('"'))
            elif command == "UID STORE" and selected is not None:
                uid = int(args.split(" ", 1)[0])
                if re.search(r"\\Deleted", args):
                    box.deleted.add(uid)
            elif command == "EXPUNGE" and selected is not None:
                for uid in sorted(box.deleted & set(selected)):
                    del selected[uid]
                    writer.write(b"* 1 EXPUNGE\r\n")
                box.deleted.clear()
            elif command == "LOGOUT":
                writer.write(b"* BYE\r\n" + f"{tag} OK LOGOUT completed\r\n".encode())
                await writer.drain()
                break
            else:
                writer.write(f"{tag} BAD unknown command\r\n".encode())
                continue
            writer.write(f"{tag} OK {command} completed\r\n".encode())
            await writer.drain()
        writer.close()
