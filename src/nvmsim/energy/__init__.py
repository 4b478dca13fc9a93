"""nvmsim.energy (see DESIGN.md)."""
