"""Personalized notifications: who gets which message, when, through which channel, at most how often.

The door of the package; its modules each have one job: :mod:`.triggers` (which users a rule considers),
:mod:`.scoring` (their engagement score), :mod:`.links` (signed opt-out and open links), :mod:`.template_context`
(the whitelist a message's templates see), :mod:`.run` (a run: limits, quiet hours, idempotent recording, sending)
and :mod:`.inbox` (a user's in-app messages).
"""

from personalization.delivery.notifications.inbox import inbox, mark_all_read, mark_read, unread_count
from personalization.delivery.notifications.links import (
    key_for_open_token,
    mark_opened,
    opt_out,
    user_for_opt_out_token,
)
from personalization.delivery.notifications.run import send_notifications, template_prefix
from personalization.delivery.notifications.template_context import ALLOWED, disallowed_variables

__all__ = [
    "ALLOWED", "disallowed_variables", "inbox", "key_for_open_token", "mark_all_read", "mark_opened", "mark_read",
    "opt_out",
    "send_notifications", "template_prefix", "unread_count", "user_for_opt_out_token",
]
