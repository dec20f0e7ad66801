"""scope records what a Python program did and lets you ask about it afterwards.

Run a program under it with ``python -m scope run app.py``; query the recording
with ``scope calls``, ``scope tree`` and friends.  See README.md.
"""

__version__ = "0.1.0"
