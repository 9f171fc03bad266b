"""Hold-back stages between a decision and the forward queue: windows, dedup, flapping, storms."""
