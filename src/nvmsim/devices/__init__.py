"""One cell's physics as pure tensor functions: noise, levels, faults, drift, presets."""
