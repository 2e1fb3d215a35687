"""What every socket kind shares: admission, transport, frame bytes, limits, the token
clock and the receive loop. Socket kinds (rooms, notes, feed) stand on it side by side."""
