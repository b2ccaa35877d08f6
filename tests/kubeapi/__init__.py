"""A test double of kube-apiserver that speaks the real HTTP protocol (see server.py)."""

from tests.kubeapi.admin import AdminServer
from tests.kubeapi.server import INITIAL_EVENTS_END, KubeAPIServer, Options, free_port

__all__ = ["INITIAL_EVENTS_END", "AdminServer", "KubeAPIServer", "Options", "free_port"]
