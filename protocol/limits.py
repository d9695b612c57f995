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

# Largest n= of a signed message: one connection never sends 2^53 messages, and the value stays
# exact in every JSON or float a log tool may put it through.
MAX_MESSAGE_COUNTER = 2**53

# A segmenter warns when the daemon's clock (its HELLO's time=) is further than this from its own:
# information only, nothing is refused for time (docs/protocol.md, Authentication).
CLOCK_WARNING_MS = 30_000
