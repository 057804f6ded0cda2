#!/bin/bash
# borg 1.2 (create --sparse, fixed 4 MiB chunks; extract) and restic (backup;
# restore) back up the two guests of backup-clients.sh, which sets them up,
# runs these clients and checks what they restore as it checks its own.
# shellcheck disable=SC2034 # read by backup-clients.sh
backup_clients="borg restic"
. "$(dirname -- "$0")/backup-clients.sh"
