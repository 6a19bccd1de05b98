"""The one base class every expected failure derives from.

The CLI turns a GatewayError into a one-line message and a non-zero exit;
anything else is a bug and keeps its traceback.
"""


class GatewayError(Exception):
    """A failure the user can act on; the message names what failed and why."""
