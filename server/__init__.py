"""The Rendezvous node: gateway, HTTP API, fan-out, presence and the services behind them."""
