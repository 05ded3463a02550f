"""The built-in parsers file (Fluent Bit's ``conf/parsers.conf``), shipped as package data."""
