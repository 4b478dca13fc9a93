"""nvmsim.models (see DESIGN.md)."""
