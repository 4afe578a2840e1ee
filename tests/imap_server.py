"""A small IMAP4rev1 server for tests: enough of the protocol for imaplib to log in (over TLS,
STARTTLS or in the clear), list and create folders, select, search, fetch, copy, flag and
expunge. It stands in for a mail provider's server, not for any code of ours, and it remembers
every command it was sent, so a test can tell whether a password ever reached it.

``issue_certificates`` makes a private CA and a server certificate for 127.0.0.1 with
``cryptography``, for the TLS tests."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import ssl
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Mailbox:
    """Folders of messages by UID, the credentials to reach them, and how the server misbehaves."""

    username: str = "bounces"
    password: str = "secret"
    folders: dict[str, dict[int, bytes]] = field(default_factory=lambda: {"INBOX": {}})
    deleted: set[int] = field(default_factory=set)
    next_uid: int = 1
    refuse_create: bool = False  # CREATE answers NO (a server that does not let us)
    copy_refusal: str | None = None  # COPY answers "NO <this>" even to a folder that exists

    def add(self, raw: bytes, folder: str = "INBOX") -> int:
        uid = self.next_uid
        self.next_uid += 1
        self.folders.setdefault(folder, {})[uid] = raw
        return uid


@dataclass(frozen=True)
class TlsFiles:
    """A CA and the server certificate it issued, as PEM files."""

    ca: Path
    certificate: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, self.key)
        return context


def issue_certificates(directory: Path, host: str = "127.0.0.1", name: str = "ca") -> TlsFiles:
    """A new CA, and a certificate it signs for ``host`` (an IP address or a DNS name)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Test {name}")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    try:
        alt_name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt_name = x509.DNSName(host)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([alt_name]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(
        directory / f"{name}.pem", directory / f"{name}-server.pem", directory / f"{name}-key.pem"
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.certificate.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


class ImapServer:
    """Serves a Mailbox on 127.0.0.1:port in a background thread.

    ``tls``: the connection is TLS from the first byte (imaps); ``starttls``: the server offers
    STARTTLS and upgrades with this context. ``commands`` lists the command names received, in
    order, over all connections; ``connections`` counts the TCP connections accepted.
    """

    def __init__(
        self,
        mailbox: Mailbox,
        port: int,
        tls: ssl.SSLContext | None = None,
        starttls: ssl.SSLContext | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.port = port
        self.tls = tls
        self.starttls = starttls
        self.commands: list[str] = []
        self.connections = 0
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
        self.connections += 1
        try:
            if self.tls is not None:
                await writer.start_tls(self.tls)
            await self._converse(reader, writer)
        except (ssl.SSLError, ConnectionError):
            pass  # the client refused our certificate, or hung up: nothing more to say
        finally:
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        box = self.mailbox
        selected: dict[int, bytes] | None = None
        secure = self.tls is not None
        writer.write(b"* OK IMAP4rev1 test server ready\r\n")
        await writer.drain()
        while line := await reader.readline():
            tag, _, rest = line.decode().rstrip("\r\n").partition(" ")
            command, _, args = rest.partition(" ")
            command = command.upper()
            if command == "UID":
                command, _, args = args.partition(" ")
                command = "UID " + command.upper()
            self.commands.append(command)
            if command == "CAPABILITY":
                offer = " STARTTLS" if self.starttls is not None and not secure else ""
                writer.write(f"* CAPABILITY IMAP4rev1{offer}\r\n".encode())
            elif command == "STARTTLS" and self.starttls is not None and not secure:
                writer.write(f"{tag} OK Begin TLS negotiation now\r\n".encode())
                await writer.drain()
                await writer.start_tls(self.starttls)
                secure = True
                continue
            elif command == "LOGIN":
                user, password = [p.strip('"') for p in args.split(" ", 1)]
                if (user, password) != (box.username, box.password):
                    writer.write(f"{tag} NO [AUTHENTICATIONFAILED] bad credentials\r\n".encode())
                    continue
            elif command == "LIST":
                pattern = args.split(" ", 1)[1].strip('"')
                for name in sorted(box.folders):
                    if name == pattern or pattern == "*":
                        writer.write(f'* LIST () "/" "{name}"\r\n'.encode())
            elif command == "CREATE":
                name = args.strip('"')
                if box.refuse_create or name in box.folders:
                    writer.write(f"{tag} NO [CANNOT] cannot create {name}\r\n".encode())
                    continue
                box.folders[name] = {}
            elif command == "SELECT":
                selected = box.folders.get(args.strip('"'))
                if selected is None:
                    writer.write(f"{tag} NO no such folder\r\n".encode())
                    continue
                writer.write(f"* {len(selected)} EXISTS\r\n* 0 RECENT\r\n".encode())
            elif command == "UID SEARCH" and selected is not None:
                uids = sorted(selected)
                if "UNDELETED" in args.upper():
                    uids = [uid for uid in uids if uid not in box.deleted]
                writer.write(("* SEARCH " + " ".join(map(str, uids))).encode() + b"\r\n")
            elif command == "UID FETCH" and selected is not None:
                uid = int(args.split(" ", 1)[0])
                raw = selected[uid]
                item = "BODY[]" if "BODY" in args.upper() else "RFC822"
                writer.write(
                    f"* 1 FETCH (UID {uid} {item} {{{len(raw)}}}\r\n".encode() + raw + b")\r\n"
                )
            elif command == "UID COPY" and selected is not None:
                uid_text, folder = args.split(" ", 1)
                target = box.folders.get(folder.strip('"'))
                if target is None:
                    writer.write(f"{tag} NO [TRYCREATE] no folder {folder}\r\n".encode())
                    continue
                if box.copy_refusal is not None:
                    writer.write(f"{tag} NO {box.copy_refusal}\r\n".encode())
                    continue
                box.add(selected[int(uid_text)], folder.strip('"'))
            elif command == "UID STORE" and selected is not None:
                uid = int(args.split(" ", 1)[0])
                if re.search(r"\\Deleted", args):
                    box.deleted.add(uid)
            elif command == "EXPUNGE" and selected is not None:
                expunged = sorted(box.deleted & set(selected))
                for uid in expunged:
                    del selected[uid]
                    writer.write(b"* 1 EXPUNGE\r\n")
                box.deleted -= set(expunged)
            elif command == "LOGOUT":
                writer.write(b"* BYE\r\n" + f"{tag} OK LOGOUT completed\r\n".encode())
                await writer.drain()
                break
            else:
                writer.write(f"{tag} BAD unknown command\r\n".encode())
                await writer.drain()
                continue
            writer.write(f"{tag} OK {command} completed\r\n".encode())
            await writer.drain()
