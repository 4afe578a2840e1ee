"""A discard-everything SMTP server on aiosmtpd: the fallback when Postfix's smtp-sink is missing.

Prints ``mesg=N`` (the running message count, like ``smtp-sink -c``) to stdout after every
message, so the benchmark reads both sinks the same way. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from aiosmtpd.controller import Controller


class CountingSink:
    """Accepts every message and counts it."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.count += 1
        sys.stdout.write(f"mesg={self.count}\r")
        sys.stdout.flush()
        return "250 OK"


def main() -> None:
    """Serve until told to stop."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    controller = Controller(
        CountingSink(), hostname=args.host, port=args.port, data_size_limit=0, ready_timeout=10
    )
    controller.start()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
