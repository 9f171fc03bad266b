"""Developer tools for a laptop: ``mutt run``'s supervisor, the local Moog sink, ``mutt send``."""
