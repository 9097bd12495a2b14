"""The stepstream progress server."""
