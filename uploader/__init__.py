"""hls-uploadd: receives index messages, keeps a durable queue and publishes segments and playlists."""
