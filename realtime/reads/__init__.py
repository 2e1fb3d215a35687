"""Read state beside the streams: read markers, unread counts, room summaries, digests.

Everything here is counted from indexes (``ix_event_stream_type_seq``, the marker's primary
key): a room's unread count reads at most ``UNREAD_CAP`` index entries past the marker, not
the room's history.
"""
