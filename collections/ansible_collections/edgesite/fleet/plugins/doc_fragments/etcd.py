# Copyright (c) 2026, EdgeSite contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by the edgesite.fleet etcd_* modules (module_utils/etcd.py)."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  ca_cert:
    description: CA bundle that signed the etcd server certificates.
    type: path
  client_cert:
    description: Client certificate (PEM) presented to etcd.
    type: path
  client_key:
    description: Key (PEM) of O(client_cert).
    type: path
  timeout:
    description: Seconds to wait for each request.
    type: float
    default: 10.0
"""
