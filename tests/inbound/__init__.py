"""Inbound transfers through the backend API, as the SDK calls it."""
