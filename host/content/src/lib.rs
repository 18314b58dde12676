//! Content-addressed blob store, image store, OCI layout / docker-save import, registry pull.
