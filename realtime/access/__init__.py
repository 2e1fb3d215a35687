"""Access that changes while sockets are open: room members and the archive flag (events on
the room's stream), token revocations (events on the ``access`` stream), and the registry of
this process's live connections that those changes close."""
