"""Screens: each loads its data in thread workers through `tui.data`."""
