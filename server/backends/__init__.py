"""The state the services share, behind small interfaces: in-process for one node, Redis for
a cluster."""
