"""Events: the ingest schema and what makes two events the same (fingerprints, templates)."""
