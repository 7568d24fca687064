"""Practice-system dialects: each module turns its input into the canonical model."""
