"""A small shop: a FastAPI app that enqueues pgqueue jobs in its request transaction."""
