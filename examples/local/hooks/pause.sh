#!/bin/sh
# Pre hook: a real one would ask the application to finish its writes and hold new ones.
set -eu
echo "pausing $1 for run ${QUIESCE_RUN_ID:-?}"
sync
