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
