"""Widgets: each gets plain records from its screen, never a session."""
