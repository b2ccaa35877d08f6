"""Offline stand-in for ansible-test's pip bootstrap download.

ansible-test bootstraps pip in its sanity venvs with a get-pip script fetched from
ci-files.testing.ansible.com, which this network cannot reach. This script does the same
job from what is reachable: the interpreter's bundled pip (ensurepip), then a normal
`pip install` of the arguments ansible-test passes (the pinned pip and friends, from PyPI).
`make sanity` copies it to ~/.ansible/test/cache/get_pip_<version>.py.
"""

import ensurepip
import os
import subprocess
import sys

# ensurepip points PIP_CONFIG_FILE at /dev/null for its own run; the real install below must
# see the machine's pip configuration (index mirror, CA bundle) again.
environment = dict(os.environ)
ensurepip.bootstrap(upgrade=False)

# --no-setuptools / --no-wheel are get-pip's own flags ("don't add these"), not pip's.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
# A fresh interpreter, so pip reads its configuration (index, CA bundle) like any pip run.
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args], env=environment))
