"""The database: engine and sessions, models, partitions, retention and archives, the config audit."""
