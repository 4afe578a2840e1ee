"""Sending: planning, rendering, building and delivering editions and alerts."""
