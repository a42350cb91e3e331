"""The edge: WebSocket sessions, frames on the socket, the HTTP API, authentication."""
