# SPDX-License-Identifier: AGPL-3.0-or-later
"""Server hooks: the server's event interface and the hooks built from config.

PLACEHOLDER until the hooks issue lands: read_config() accepts no keys and
create() returns no hooks. The interface the server calls on every hook:

  client_connected(name, peer)      a configured client connected (peer: (host, port))
  client_disconnected(name)         its connection ended
  link_header(name, link)           a LINK_HDR was accepted (validate.LinkInfo)
  data(name, link, payload)         one LINK_DATA; payload is only valid during the call
  file_closed(name, path)           a trace file was closed (after the move to completed_path)
  close()                           the server is shutting down (after the last file_closed)
"""


def read_config(section):
    """Read the hook keys of the [server] config Section; return a config object."""
    return None


def create(config, loop, server_name="osmo-pcap"):
    """Return the list of hook objects for config, registered with loop."""
    return []
