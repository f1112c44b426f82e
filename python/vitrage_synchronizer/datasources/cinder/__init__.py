"""cinder datasources read from the synchronizer."""
