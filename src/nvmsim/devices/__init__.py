"""One cell's physics as pure tensor functions: programming error, read noise, faults, drift, presets."""
