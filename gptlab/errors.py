"""The one exception type that reaches the user as a one-line message.

Library code raises `GptlabError("what is wrong, naming the file/field")` for anything the user can fix
(bad file, bad config, bad argument). `gptlab.cli.main` prints it as `gptlab: error: ...` and exits 2.
"""


class GptlabError(Exception):
    """A problem with the user's input or environment, described in one line."""
