"""Vitrage datasources that read the synchronizer sidecar.

``vitrage_synchronizer.client`` is a stdlib-only JSON-RPC client for the
sidecar's Unix socket; ``vitrage_synchronizer.datasources`` holds the Vitrage
datasource drivers (loaded through ``[datasources] path`` in vitrage.conf).
"""
