"""The floor both programs stand on: option plumbing and durable file writes.

Neither wire format (protocol/) nor either program's policy lives here; segmenter/ and uploader/
import this package, never each other.
"""
