"""One module per CLI command group; each registers its commands on the app."""
