"""Measuring on a device: the timed pass, end-to-end text-to-label latency, per-operator profiles."""
