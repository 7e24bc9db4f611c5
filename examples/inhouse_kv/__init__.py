"""An in-house style key-value client with a callback API, and its bridge adapter.

`server.py` and `client.py` stand for the legacy driver a company already
has; `aio.py` is the adapter the README's "Adapting your own driver" shows.
"""
