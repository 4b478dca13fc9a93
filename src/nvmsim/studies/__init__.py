"""Studies: schema, sweep expansion, executors, result store."""
