"""An array and its periphery: mapping, converters, parasitics, tiles."""
