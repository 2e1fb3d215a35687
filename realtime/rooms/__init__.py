"""The room socket: its frames (chat, typing, checklist ops) and rules, on sockets/."""
