"""heat datasources read from the synchronizer."""
