"""nvmsim.io (see DESIGN.md)."""
