"""nvmsim.studies (see DESIGN.md)."""
