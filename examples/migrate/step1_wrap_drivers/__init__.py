"""examples/migrate/step1_wrap_drivers: see README.md; run app.py."""
