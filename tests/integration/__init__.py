"""Tests against a real Synapse, PostgreSQL and matrix-js-sdk."""
