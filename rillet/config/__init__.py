"""Configuration: classic and YAML readers, one typed model, option tables."""
