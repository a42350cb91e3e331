"""The services: every rule of chat, matches and presence, called by the edge through a
Caller."""
