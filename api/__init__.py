"""The thin HTTP layer: the client API for the CBS and the backend API for Payment Manager."""
