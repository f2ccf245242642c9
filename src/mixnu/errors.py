"""Errors a user can fix. The CLI prints their message as one line and exits 1.

Raise a subclass whose message says what is wrong *and* what to do about it. Anything that is
not a `MixnuError` is a bug in mixnu and keeps its traceback.
"""


class MixnuError(Exception):
    """Base class for user-facing errors (bad input, bad config, missing files)."""


class ConfigError(MixnuError):
    """A config file or option is invalid."""


class DataError(MixnuError):
    """A corpus or data file is missing, empty, or malformed."""


class TokenizerError(MixnuError):
    """A tokenizer is unreadable, of an unsupported kind, or does not match another one."""


class CheckpointError(MixnuError):
    """A model checkpoint is missing, corrupt, unsafe (pickle) or incompatible."""


class OutputExistsError(MixnuError):
    """An output path exists and `--force` was not given."""


class JudgeError(MixnuError):
    """A judge or generation server is unreachable, unauthorised, or misconfigured."""
