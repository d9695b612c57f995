"""hls-segment: cuts a live MPEG-TS stream into HLS segments and notifies the upload daemon."""
