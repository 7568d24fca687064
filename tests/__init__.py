"""Wijkbrug tests: unit tests with fakes, integration tests against real parts."""
