"""The cluster seam: how the controller gets nodes and reaches them.

``remote`` (the Remote protocol: commands, files, peer addresses and endpoints),
``backends`` (local network namespaces, Docker containers; a registry by name), ``net``
(partition, loss and delay rules over any Remote), ``ledger`` and ``cleanup`` (what a run
made, and removing it after a crash), ``subnets`` and ``image`` (the Docker node image).
"""
