"""Adapters that let pgqueue write inside connections owned by other libraries."""
