"""One module per command family; each imports only what its command needs, lazily."""
