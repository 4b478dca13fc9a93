"""Tables, figures and a static HTML report of a study."""
