"""The local provider: L1 hosts as QEMU processes on the user's own Linux machine.

``qemu`` holds the contract-independent pieces (seed ISO, overlay, command line, KVM probe,
start/stop by pid); the Provider class comes with the provider contract.
"""
