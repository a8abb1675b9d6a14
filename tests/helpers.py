"""Shared test constants and helpers."""

from __future__ import annotations

SECRET = "cse-bridge-test-secret-0123456789abcdef"
API_KEY = "test-key-workspace-1"
OTHER_API_KEY = "test-key-workspace-2"
WORKSPACE = 1
OTHER_WORKSPACE = 2
API_KEYS = {API_KEY: WORKSPACE, OTHER_API_KEY: OTHER_WORKSPACE}
