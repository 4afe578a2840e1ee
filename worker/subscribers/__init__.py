"""Subscribers: input rules and status transitions, their queries, CSV import, and what
readers do (subscribe, confirm, preferences, export, erase)."""
