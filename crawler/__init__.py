"""Scrapy crawler feeding the raw store (see crawler/run.py)."""
