"""examples/migrate/step3_verified: see README.md; run app.py."""
