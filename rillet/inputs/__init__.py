"""Input plugins. ``MODULES`` maps each plugin name (and alias) to the module defining it; the
registry imports a module only when a configuration names its plugin."""

MODULES = {
    "dummy": "rillet.inputs.dummy",
    "tail": "rillet.inputs.tail",
}
