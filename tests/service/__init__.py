"""Tests of the HTTP service (the chart page in a real browser, for now)."""
