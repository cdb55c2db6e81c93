"""Exception types raised by campaign.

Errors a user can fix (a bad campaign file, an unknown name, an old schema)
derive from :class:`CampaignError` and carry a message meant to be printed
as it is. The command line turns them into exit status 2; anything else is a
failure with exit status 1.
"""


class CampaignError(Exception):
    """A problem the user can fix. The message states what is wrong and how to fix it."""


class ConfigError(CampaignError):
    """An invalid campaign file, flag or setting."""


class NotFoundError(CampaignError):
    """A campaign, model version or chain that does not exist."""


class SchemaError(CampaignError):
    """The database schema is missing, out of date or newer than this code."""


class ConflictError(CampaignError):
    """The operation clashes with existing data or with another process."""


class LikelihoodError(Exception):
    """A likelihood evaluation failed; the message is stored on the point."""
