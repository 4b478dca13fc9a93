"""nvmsim.training (see DESIGN.md)."""
