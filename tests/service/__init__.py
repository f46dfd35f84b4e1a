"""Tests of the HTTP service: routes, stores, encoders, time parsing, the chart page in a real browser."""
