"""The results database and each run's provenance."""
