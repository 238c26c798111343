"""The one exception type that command lines turn into a clear one-line message."""


class ToolkitError(ValueError):
    """Bad input or state a user can fix; the message says what was wrong and how to fix it."""
