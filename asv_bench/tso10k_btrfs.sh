#!/usr/bin/env bash
# The full-size time-series memory check on a machine without 260 GB of free disk.
#
# Stage 1 of a NIRISS SOSS SUBSTRIP256 (256x2048) exposure of 5 groups x 10,000 integrations
# handles ~260 GB of files (52 GB raw input, 105 GB of _rateints spill files, 105 GB of
# _rateints product). This script makes a sparse image file, formats it as btrfs, mounts it with
# forced zstd compression and runs
#
#     python asv_bench/benchmarks/pipeline_detector1.py --tso NINTS --flat --dir <mount>
#
# there: noise-free, spatially uniform ramps and a copy of the benchmark CRDS cache whose NIRISS
# reference arrays are uniform (see ``--flat`` in that script), so every file is made of constant
# arrays and takes ~1/30 of its size on disk (about 9 GB in all for 10,000 integrations).
# Then it prints the compression figures and removes the mount and the image.
#
# Measured (2-core machine, 2026-11-21, 10,000 integrations): 808 s, peak RSS 264 MB, the same
# as 1000 integrations; 146 GB of files left at the end took 4.8 GB (image file: 9.1 GB used).
#
# Caveat: the peak memory measured this way is that of real data because the pipeline's memory
# does not depend on pixel values (same blocks, kernels and arrays) -- except for what depends
# on the number of flagged pixels (jumps, saturation, bad pixels: none here), and the wall time
# is not that of real data (compression, and the kernels' data-dependent branches).
#
# Usage (root: mount, losetup):  asv_bench/tso10k_btrfs.sh [NINTS]      (default 10000)
# Environment: PYTHON (default: python), IMAGE_DIR (default: $TMPDIR or /tmp),
#              IMAGE_SIZE (apparent size, default 400G), MIN_FREE_GB (stop the run when the
#              image's host file system has less than this left, default 4).
set -euo pipefail

NINTS=${1:-10000}
PYTHON=${PYTHON:-python}
IMAGE_DIR=${IMAGE_DIR:-${TMPDIR:-/tmp}}
IMAGE_SIZE=${IMAGE_SIZE:-400G}
MIN_FREE_GB=${MIN_FREE_GB:-4}
HERE=$(cd "$(dirname "$0")" && pwd)
IMG="$IMAGE_DIR/jwpipe_tso_btrfs.img"
MNT="$IMAGE_DIR/jwpipe_tso_btrfs.mnt"

for tool in mkfs.btrfs btrfs mount umount; do
    command -v "$tool" >/dev/null || { echo "needs $tool (Debian: btrfs-progs)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "needs root (mount)" >&2; exit 2; }
[ -e "$IMG" ] && { echo "$IMG exists: remove it (and unmount $MNT) first" >&2; exit 2; }

RUN_PID=
WATCH_PID=
cleanup() {
    [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null || true
    [ -n "$RUN_PID" ] && kill -- "-$RUN_PID" 2>/dev/null || true
    if mountpoint -q "$MNT"; then umount "$MNT"; fi
    rmdir "$MNT" 2>/dev/null || true
    rm -f "$IMG"
    echo "removed $IMG; host disk: $(df -h --output=avail "$IMAGE_DIR" | tail -1 | tr -d ' ') free"
}
trap cleanup EXIT

truncate -s "$IMAGE_SIZE" "$IMG"             # sparse: takes only what btrfs writes
mkfs.btrfs -q -f "$IMG"
mkdir -p "$MNT"
mount -o loop,compress-force=zstd:1 "$IMG" "$MNT"
echo "btrfs (compress-force=zstd:1) on $IMG ($IMAGE_SIZE apparent) at $MNT"

# The run, in its own process group (so the watchdog can stop it with its pipeline child).
setsid "$PYTHON" "$HERE/benchmarks/pipeline_detector1.py" --tso "$NINTS" --flat --dir "$MNT" \
    --keep &
RUN_PID=$!
# Watchdog: should the data not compress, stop before the host disk fills up.
(
    while sleep 5; do
        avail=$(df --output=avail -B1G "$IMAGE_DIR" | tail -1 | tr -d ' ')
        if [ "$avail" -lt "$MIN_FREE_GB" ]; then
            echo "host disk down to ${avail} GB free: stopping the run" >&2
            kill -- "-$RUN_PID" 2>/dev/null
            exit 1
        fi
    done
) &
WATCH_PID=$!
status=0
wait "$RUN_PID" || status=$?
RUN_PID=
kill "$WATCH_PID" 2>/dev/null || true
WATCH_PID=

echo "--- on disk (raw input, flat CRDS cache, products) ---"
sync
if command -v compsize >/dev/null; then
    compsize "$MNT"                             # Debian: btrfs-compsize
else
    btrfs filesystem du -s "$MNT"
fi
echo "image file: $(du -h --apparent-size "$IMG" | cut -f1) apparent," \
     "$(du -h "$IMG" | cut -f1) used"
exit "$status"
