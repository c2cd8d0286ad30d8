#!/usr/bin/env bash
# Build the Debian 12 test image that the local real-boot tests start under QEMU.
#
#   scripts/build-test-image.sh [CACHE_DIR]        (or NESTCLOUD_IMAGE_CACHE=DIR)
#   scripts/build-test-image.sh --path [CACHE_DIR] prints where the image is or would be built,
#                                                  builds nothing (needs neither root nor tools)
#
# Prints the image directory on stdout (progress goes to stderr). It holds:
#   disk.qcow2    the root file system (ext4, no partition table) as qcow2
#   vmlinuz       the kernel, initrd.img its initramfs: the image boots by QEMU direct kernel
#                 boot (-kernel/-initrd/-append), no firmware, no boot loader
#   cmdline       the kernel command line to pass with -append
#   manifest.json what was built (kernel version, sizes, build seconds, recipe key)
#
# Why direct kernel boot: it is the fastest and simplest way to start a Linux guest under
# QEMU (no UEFI firmware or GRUB stage to emulate under TCG) and the build needs no loop
# device, no mount, no partitioning tool and no boot loader (FACTS.md, "A local L1 under
# QEMU"). Official cloud images (a partitioned disk with GRUB) boot the firmware way; that is
# the provider's business, not this test image's.
#
# The image is cached under CACHE_DIR/debian-12-<key>, where <key> hashes this script (the
# whole recipe is in it) and the settings below: a rebuild happens only when the recipe
# changes. A lock file serialises concurrent builds of the same key. A cache hit needs neither
# root nor the build tools.
#
# Needs root (mmdebstrap's root mode chroots to run maintainer scripts) and Debian's packages:
# BUILD_DEPS below, checked up front with one message naming the missing ones.
set -euo pipefail

SUITE=bookworm
ARCH=amd64
# The ext4 file system's size: sparse, so the qcow2 holds only what is used. Big enough for
# the kvm profile's packages (about 960 MB with Recommends) plus headroom.
FS_SIZE=${NESTCLOUD_IMAGE_FS_SIZE:-4G}
# Debian packages this script runs (apt-get install -y --no-install-recommends ...).
BUILD_DEPS="mmdebstrap qemu-utils e2fsprogs mount"   # mount: mmdebstrap root mode (a Recommends)
# What goes in the image besides Essential:yes and apt (--variant=apt). Recommends are not
# installed (mmdebstrap's default), which keeps the image small.
INCLUDE=(
  linux-image-cloud-amd64 initramfs-tools   # a kernel with virtio drivers, and its initrd
  systemd systemd-sysv udev dbus            # init; udev names the NIC en*, loads modules
  systemd-resolved                          # DNS from DHCP for apt inside the guest
  cloud-init                                # reads the NoCloud seed
  openssh-server sudo                       # like a cloud image: a user to log in as
  locales                                   # cloud-init's locale module runs locale-gen
  e2fsprogs                                 # fsck.ext4 at boot, resize2fs for resizefs
  python3 kmod iproute2 netbase ca-certificates
)

die() { echo "build-test-image: $*" >&2; exit 2; }

PRINT_PATH=0
if [[ ${1:-} == --path ]]; then PRINT_PATH=1; shift; fi
CACHE_DIR=${1:-${NESTCLOUD_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nestcloud/images}}
SELF=$(readlink -f "$0")
KEY=$( { cat "$SELF"; echo "$SUITE $ARCH $FS_SIZE"; } | sha256sum | cut -c1-16)
OUT="$CACHE_DIR/debian-12-$KEY"
if ((PRINT_PATH)); then
  echo "$OUT"
  exit 0
fi

if [[ -f "$OUT/manifest.json" ]]; then
  echo "build-test-image: cached $OUT" >&2
  echo "$OUT"
  exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap chroots into the new system)"
missing=()
for tool in mmdebstrap qemu-img mkfs.ext4; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
((${#missing[@]} == 0)) || die "missing ${missing[*]}: apt-get install -y --no-install-recommends $BUILD_DEPS"

mkdir -p -- "$CACHE_DIR"
exec 9>"$CACHE_DIR/.debian-12-$KEY.lock"
flock 9
if [[ -f "$OUT/manifest.json" ]]; then   # another build finished while we waited
  echo "$OUT"
  exit 0
fi

WORK=$(mktemp -d "$CACHE_DIR/.build-XXXXXX")
chmod 0755 "$WORK"   # mktemp's 0700 would keep apt's _apt user out of the lists dir
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
ROOT="$WORK/root"
START=$SECONDS

# Files nobody reads on a test L1. locale.alias and copyright files stay (policy), and
# /usr/share/i18n stays because locale-gen needs it.
DPKG_OPTS=(
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
)

# The initramfs needs only what mounts the root: virtio-pci, virtio-blk, ext4 (MODULES=list
# and a hook instead of MODULES=most: a ~7x smaller initrd, which TCG unpacks faster). The
# hook is not a dpkg conffile, so writing it before the kernel's postinst runs asks nothing.
# FSTYPE=ext4: the fsck hook ignores fstab's type for / and probes the root device instead,
# which does not exist in the build chroot, so without it the initramfs gets no fsck.ext4 and
# the boot prints "Warning: fsck not present, so skipping root file system".
setup_initramfs='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"
printf "MODULES=list\nCOMPRESS=gzip\nFSTYPE=ext4\n" > "$1/etc/initramfs-tools/conf.d/nestcloud"
printf "%s\n" "#!/bin/sh" "[ \"\$1\" = prereqs ] && exit 0" ". /usr/share/initramfs-tools/hook-functions" \
  "manual_add_modules virtio_pci virtio_blk ext4" > "$1/etc/initramfs-tools/hooks/nestcloud"
chmod 0755 "$1/etc/initramfs-tools/hooks/nestcloud"'

customize='set -e
echo "/dev/vda / ext4 rw,discard,errors=remount-ro 0 1" > "$1/etc/fstab"
echo debian > "$1/etc/hostname"
printf "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n" > "$1/etc/hosts"
mkdir -p "$1/etc/systemd/network"
printf "[Match]\nName=en*\n\n[Network]\nDHCP=yes\n" > "$1/etc/systemd/network/20-nestcloud-dhcp.network"
chroot "$1" systemctl enable systemd-networkd.service systemd-resolved.service
# cloud-init'"'"'s locale module (Debian) runs locale-gen unless the locale already exists.
echo "en_US.UTF-8 UTF-8" > "$1/etc/locale.gen"
chroot "$1" locale-gen
echo "LANG=en_US.UTF-8" > "$1/etc/default/locale"
# cloud-init makes the host keys at first boot; under TCG RSA-3072 alone took ~15 s of a
# ~55 s boot. The test image makes the two fast kinds only (official images make all).
printf "ssh_genkeytypes: [ed25519, ecdsa]\n" > "$1/etc/cloud/cloud.cfg.d/90-nestcloud-test-image.cfg"
# Every clone must get its own host keys and machine id (cloud-init and systemd make them).
rm -f "$1"/etc/ssh/ssh_host_*
: > "$1/etc/machine-id"
rm -f "$1/var/lib/dbus/machine-id"'

echo "build-test-image: mmdebstrap $SUITE into $ROOT" >&2
mmdebstrap --variant=apt --mode=root --arch="$ARCH" --components=main \
  --include="$(IFS=,; echo "${INCLUDE[*]}")" \
  "${DPKG_OPTS[@]}" \
  --setup-hook="$setup_initramfs" \
  --customize-hook="$customize" \
  "$SUITE" "$ROOT" >&2

KVER=$(basename "$(ls -d "$ROOT"/lib/modules/*)")
CLOUD_INIT=$(dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f '${Version}' cloud-init)
PACKAGES=$(dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f '${db:Status-Abbrev}\n' | grep -c '^ii')
cp "$ROOT/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
cp "$ROOT/boot/initrd.img-$KVER" "$WORK/initrd.img"
# ro: the initramfs checks the root file system, then systemd remounts it rw (fstab).
echo "console=ttyS0 root=/dev/vda ro" > "$WORK/cmdline"

echo "build-test-image: mkfs.ext4 -d ($FS_SIZE, sparse) and qemu-img convert" >&2
truncate -s "$FS_SIZE" "$WORK/root.ext4"
mkfs.ext4 -q -F -L nestcloud-root -d "$ROOT" "$WORK/root.ext4"
qemu-img convert -f raw -O qcow2 "$WORK/root.ext4" "$WORK/disk.qcow2"
rm -rf "$WORK/root.ext4" "$ROOT"

USED=$(du -B1 "$WORK/disk.qcow2" | cut -f1)
cat > "$WORK/manifest.json" <<EOF
{"os": "debian-12", "suite": "$SUITE", "arch": "$ARCH", "key": "$KEY", "kernel": "$KVER",
 "cloud_init": "$CLOUD_INIT", "packages": $PACKAGES,
 "boot": "direct-kernel", "fs_size": "$FS_SIZE", "disk_bytes": $USED,
 "build_seconds": $((SECONDS - START))}
EOF
rm -rf "$OUT"
mv "$WORK" "$OUT"
trap - EXIT
echo "build-test-image: built $OUT in $((SECONDS - START)) s ($((USED / 1048576)) MiB)" >&2
echo "$OUT"
