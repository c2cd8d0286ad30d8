"""The local provider: L1 hosts as QEMU processes on the user's own Linux machine.

``LocalProvider`` (provider.py) follows nestcloud's provider contract; ``qemu`` holds the
QEMU building blocks (seed ISO, overlay, command line, KVM probe, start/stop by pid),
``images`` the official cloud images and their checksums, ``host`` what this machine can give.
Importing this package imports neither pycdlib nor anything that starts a process.
"""

from providers.local.provider import LocalProvider

__all__ = ["LocalProvider"]
