"""MUTT's settings: :class:`Settings`, read once with :func:`load_settings` (see ``settings``)."""

from mutt_app.config.settings import VERSION, Settings, SettingsError, load_settings

__all__ = ["VERSION", "Settings", "SettingsError", "load_settings"]
