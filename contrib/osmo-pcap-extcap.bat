@echo off
rem SPDX-License-Identifier: AGPL-3.0-or-later
rem Windows: Wireshark runs batch files from its extcap folder, not Python scripts.
rem Put this file next to osmo_pcap_extcap.py in that folder (doc/wireshark.md#install).
rem "py" is the launcher of python.org's installer; use the full path of python.exe
rem instead if Python came from elsewhere.
py -3 "%~dp0osmo_pcap_extcap.py" %*
