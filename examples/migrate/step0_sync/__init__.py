"""examples/migrate/step0_sync: see README.md; run app.py."""
