# SPDX-License-Identifier: AGPL-3.0-or-later
"""osmo-pcap in pure Python: distributed packet capture (client, server, cleanup).

The package is the only place code is edited; the top-level scripts
osmo_pcap_client.py, osmo_pcap_server.py and osmo_pcap_clean.py are generated
from it by tools/bundle.py (run `make`).
"""

__version__ = "0.1.0"
COPYRIGHT = ("Copyright (C) the osmo-pcap for Python authors. "
             "License AGPL-3.0-or-later: <https://www.gnu.org/licenses/agpl-3.0.html>")
