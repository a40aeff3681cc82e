"""Errors that are the user's to fix (configuration, missing models, unreachable downloads).

The CLI prints them as one line and exits with status 2 instead of showing a stack trace.
"""


class UserError(Exception):
    """Base class of every error whose message tells the user what to change."""
