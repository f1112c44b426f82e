"""neutron datasources read from the synchronizer."""
