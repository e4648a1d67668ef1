"""Connectivity: discovery, pooled sessions, health monitors, resilience (breaker, backoff), GPU sampling, metrics."""
