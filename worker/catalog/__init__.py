"""Comparisons: the import format, their queries, and the views the digest renders."""
