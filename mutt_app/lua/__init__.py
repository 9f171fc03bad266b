"""Lua for Redis: the shared prelude every script starts with, and the loader that prepends it."""
