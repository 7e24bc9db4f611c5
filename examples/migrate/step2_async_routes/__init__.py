"""examples/migrate/step2_async_routes: see README.md; run app.py."""
