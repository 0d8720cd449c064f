"""Profile formats: one module each, every one converting to and from `profiler.model.Profile`."""


class FormatError(ValueError):
    """Input that does not parse as the format it claims to be; the message says where and why."""
