"""The exceptions that command lines turn into one clear line and an exit status."""
import signal


class ToolkitError(ValueError):
    """Bad input or state a user can fix; the message says what was wrong and how to fix it."""


class RunInterruptedError(Exception):
    """Training stopped by a signal after saving checkpoint.pth; `code` is the exit status to use (128 + signal)."""

    def __init__(self, signum: int, step: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint.pth saved "
                         f"(resume with --restore-dir)")
        self.code = 128 + signum


def first_line(e: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type when it has none); past `limit` characters it is cut at
    a space and ends with '...', never in the middle of a word."""
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else type(e).__name__
    if len(text) <= limit:
        return text
    head = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return head.rstrip(",;:") + " ..."
