#!/bin/sh
# Runs once on every seat after nestcloud's bootstrap: a welcome note for the student.
cat > /etc/motd <<'MOTD'
Welcome to firecracker-101. Firecracker is installed; /dev/kvm is yours.
MOTD
