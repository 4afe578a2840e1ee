"""The ``newsletter`` command: one module per command group, ``app`` their frame, ``output``
what long work shows. Importing the package registers every command on ``app``, in the order
``--help`` lists them."""

# ruff: noqa: I001 - the order of these imports is the order of the commands in --help
from worker.cli import setup, catalog, subscribers, editions, bounces, deliverability
from worker.cli.app import app, main

__all__ = [
    "app",
    "bounces",
    "catalog",
    "deliverability",
    "editions",
    "main",
    "setup",
    "subscribers",
]
