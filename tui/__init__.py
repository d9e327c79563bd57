"""The TUI room: a Textual app over the catalog and cached predictions."""
