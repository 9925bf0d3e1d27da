"""The HTTP face of the gateway: config, upstream backends, batcher, ledger, metrics, the app."""
