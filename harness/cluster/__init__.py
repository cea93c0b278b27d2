"""The cluster seam: how the controller gets nodes and reaches them.

``remote`` (the Remote protocol: commands, files, peer addresses and endpoints),
``backends`` (local network namespaces, Docker containers, SSH hosts; a registry by
name), ``ssh_conn`` (the ssh backend's connections, host keys and command lines),
``ports`` (a server's ports checked free on its node), ``net``
(partition, loss and delay rules over any Remote), ``ledger`` and ``cleanup`` (what a run
made, and removing it after a crash), ``subnets`` and ``image`` (the Docker node image).
"""
