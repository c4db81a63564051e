"""The messaging platforms, each split into a client (send, fetch, delete, is_admin: the
`handlers.ports.Platform` port) and a receiver (platform updates → neutral events)."""
