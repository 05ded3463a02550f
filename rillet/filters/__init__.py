"""Filter plugins. ``MODULES`` maps each plugin name (and alias) to the module defining it; the
registry imports a module only when a configuration names its plugin."""

MODULES = {
    "kubernetes": "rillet.filters.kubernetes",
    "aws": "rillet.filters.aws",
    "grep": "rillet.filters.grep",
    "lua": "rillet.filters.lua",
    "modify": "rillet.filters.modify",
    "multiline": "rillet.filters.multiline",
    "nest": "rillet.filters.nest",
    "record_modifier": "rillet.filters.record_modifier",
    "rewrite_tag": "rillet.filters.rewrite_tag",
    "throttle": "rillet.filters.throttle",
    "parser": "rillet.filters.parser",
}
