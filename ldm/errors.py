"""What went wrong on the user's side: the input, the config or the environment.

Every entry point (`python -m stages.<name>`, `ldm ...`) prints a `UserError` as
one line and exits with code 2; any other exception is a bug and keeps its
traceback. The message names the file, key or value and says what to do.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix; the message says how."""


class InputNotFound(UserError, FileNotFoundError):
    """A file or folder the command needs is not there (run the stage that writes it)."""


class InvalidInput(UserError, ValueError):
    """An input exists but is not what the command can use (wrong kind of model, corrupt shard, bad value)."""
