"""All I/O of the workflows, grouped by the system it talks to (SDK, CBS, our database)."""
