"""Input plugins. ``MODULES`` maps each plugin name (and alias) to the module defining it; the
registry imports a module only when a configuration names its plugin."""

MODULES = {
    "dummy": "rillet.inputs.dummy",
    "emitter": "rillet.inputs.emitter",
    "forward": "rillet.inputs.forward",
    "http": "rillet.inputs.http",
    "tcp": "rillet.inputs.tcp",
    "tail": "rillet.inputs.tail",
}
