"""Column names shared by every DataFrame of the ML core (one place, so stages agree)."""

USER = "user"  # subject id: "u:<user pk>" for known users, "v:<visitor id>" for anonymous visitors
ITEM = "item"  # item key "<type>:<id>"
EVENT = "event"  # event type name ("view", "purchase", ...)
WEIGHT = "weight"  # training weight of one interaction
TIMESTAMP = "timestamp"  # tz-aware UTC pandas Timestamp
VALUE = "value"  # numeric payload: price, quantity, dwell seconds, rating
SESSION = "session"  # session id (visits split by inactivity), when known
SCORE = "score"  # a model's score for a (user, item) pair
LABEL = "label"  # ranker target (1 = positive outcome)

# Item feature columns given by the catalog adapter.
CATEGORY = "category"
PRICE = "price"
BRAND = "brand"
TEXT = "text"
AVAILABLE = "available"

# Context columns carried by events.
DEVICE = "device"
COUNTRY = "country"
HOUR = "hour"
WEEKDAY = "weekday"

# Feedback on served lists (one row per item shown in a logged list: ``personalization.extraction.extract_feedback``).
LIST = "list"  # recommendation id of the served list
POSITION = "position"  # 0-based place of the item in the served list
SHOWN_AT = "shown_at"  # tz-aware UTC time the list was served
CLICKED = "clicked"  # bool: a click, add-to-cart or purchase carried the list's recommendation id for the item
EXPLORED = "explored"  # bool: the position was given to exploration (reason "exploration:<method>")
