"""Acceptance tests: the pipeline as a user lives it (see test_users_day.py)."""
