"""Named limits of the wire format, each with the reason for its value."""

# The original client formats into a 10 KiB buffer, but its real messages are ~150 bytes; 4 KiB
# leaves room for every extension field and still refuses junk before buffering much of it.
MAX_LINE_BYTES = 4096

# Segment numbers are printed by the original as C ints; anything larger is not a real stream.
MAX_SEGMENT_NUMBER = 2**31 - 1

# A target duration longer than an hour is a typo, and players would wait that long to refresh.
MAX_SEGMENT_DURATION_S = 3600

# Longest file name most file systems (and S3 key segments we write) accept.
MAX_NAME_CHARS = 255

# Longest directory path we accept from a peer (Linux PATH_MAX).
MAX_PATH_CHARS = 4096

# Longest S3 key is 1024 bytes; leave room for the file name after the prefix.
MAX_KEY_PREFIX_CHARS = 700

# Default cap on an inline segment payload: 64 MiB is ~50 s of 10 Mbit/s video, far above any
# real segment, yet small enough that a hostile size cannot fill the daemon's disk quickly.
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024

# A segmenter sends a message per segment (at most every few tens of seconds) and reconnects
# when cut off; five minutes without a byte means a dead or stuck peer holding a slot.
IDLE_TIMEOUT_S = 300.0

# Longest ERR reason sent back: one short line, so a client log stays readable.
MAX_REASON_CHARS = 200

# Clock window of a signed message: its ts may be this far from the receiver's clock, either way.
# Wide enough for hosts kept in step by NTP (milliseconds apart) plus a send retried after a slow
# reconnect; narrow enough that a captured message is useless half a minute later.
AUTH_WINDOW_MS = 30_000

# Tags a receiver remembers for replay detection: one per signed message seen within the window.
# Even 1000 renditions with 1-s segments and a re-send each stay below it; past it, new messages
# are refused ("try again") instead of the memory growing or a replay slipping through.
MAX_REMEMBERED_TAGS = 200_000
