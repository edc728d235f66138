"""The one exception type whose message is shown to a user as a single line by the CLI."""


class PoliteTeacherError(Exception):
    """Bad input or a missing prerequisite. The message names the thing and says what to do."""
