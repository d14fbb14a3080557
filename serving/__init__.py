"""Pieces both aiohttp services share: TLS contexts, JSON errors, health and Prometheus metrics."""
