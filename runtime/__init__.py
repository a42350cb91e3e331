"""Asyncio and Redis helpers that `server/` and `push/` both use.

A leaf package: it imports nothing of ours outside `runtime/`, so every other package may
import it without a cycle (tests/test_layers.py checks the layers; docs/architecture.md).
"""
