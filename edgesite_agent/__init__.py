"""EdgeSite edge agent: node-scoped informer, local store and kube-proxy-lite."""

__version__ = "0.1.0"
