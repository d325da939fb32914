"""The one exception type users see, with one-line messages."""


class TaggerError(Exception):
    """A user-facing error: bad input, a missing file, a wrong shape.

    The message is one line that names the file (or flag) and the problem.
    The command-line interface prints it as ``error: <message>`` and exits 2.
    """

    def __init__(self, message, path=None):
        text = str(message).replace('\n', ' ')
        if path is not None:
            text = '%s: %s' % (path, text)
        super().__init__(text)
        self.path = path
