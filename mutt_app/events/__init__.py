"""Events: reading an ingest body (body), the event schema and item validation (schema), and what
makes two events the same (fingerprints, templates)."""
