#!/bin/sh
# Post hook: lets the application write again. Must be safe to run when nothing is paused.
set -eu
echo "resuming $1 for run ${QUIESCE_RUN_ID:-?}"
