"""Configs: the schema, sweeps into variants, content identity, and the settings eibert and measurement take."""
