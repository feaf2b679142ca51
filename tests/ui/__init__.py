"""Helpers and scripts that drive a real Prefect server and its UI (loopback only)."""
