"""A sync Flask link checker moved to async in runnable steps; see README.md."""
