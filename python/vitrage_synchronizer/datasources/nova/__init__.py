"""nova datasources read from the synchronizer."""
