"""The inbox socket: every room of a user, summarized, updated live, on sockets/."""
