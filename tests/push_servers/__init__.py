"""Local servers that speak the APNS and FCM protocols, for tests and benchmarks."""
