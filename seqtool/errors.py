"""The one exception that means "the user asked for something wrong": the CLI prints it and exits 2."""


class UserError(Exception):
    """A bad override, a missing or malformed file, a foreign checkpoint: one line, exit status 2."""


class TrainingDiverged(Exception):
    """The loss became NaN or infinite and the trainer was told to stop: exit status 3."""
