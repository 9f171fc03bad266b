"""The ingest endpoint and the publishing of accepted events."""
