"""Filter plugins."""
