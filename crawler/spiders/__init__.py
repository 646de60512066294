"""Spiders, one per file."""
