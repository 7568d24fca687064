"""Test support: a real Synapse and a matrix-js-sdk client for integration tests."""
