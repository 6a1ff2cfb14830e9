"""The end-to-end scenarios (`make e2e`)."""
