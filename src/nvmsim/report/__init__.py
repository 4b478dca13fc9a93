"""nvmsim.report (see DESIGN.md)."""
