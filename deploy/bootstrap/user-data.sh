#!/bin/bash
# shellcheck disable=SC2034  # the values are read through ${!name} when presta.conf is written
# presta-reconciler instance bootstrap (Amazon Linux 2023), run once per instance by cloud-init.
#
# Rendered by the reconciler: the values marker below becomes one quoted assignment per stack
# value, and each file marker the content of that file of deploy/bootstrap/. No secret is ever
# written here (any process can read user data through IMDS): prestashop.service reads the
# passwords from SSM at each start into a root-only file on tmpfs.
#
# Idempotent: every step checks before it acts; a reboot restarts the unit, not this script.
# It stops at the first error and never starts PrestaShop without the EFS mount.
set -euo pipefail

# @presta-values@

# PRESTA_ROOT is empty on an instance; tests run the script in a sandbox directory.
R="${PRESTA_ROOT:-}"
MNT="$R/mnt/efs/psdata"
LOG="$R/var/log/presta-bootstrap.log"
mkdir -p "$(dirname "$LOG")"
# Everything to the log file and, through cloud-init, to the console.
exec > >(tee -a "$LOG") 2>&1
fail() { echo "presta-bootstrap: FATAL: $*" >&2; exit 1; }
trap 'fail "line $LINENO: \"$BASH_COMMAND\" failed (exit $?); PrestaShop was not started"' ERR
echo "presta-bootstrap: start $(date -Is) stack=$STACK image=$IMAGE domain=$PS_DOMAIN"

# IMDSv2 only (the launch template requires tokens; hop limit 1 keeps containers out).
imds() {
  local token
  token=$(curl -sSf -X PUT "http://169.254.169.254/latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
  curl -sSf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}
INSTANCE_ID=$(imds instance-id)
echo "presta-bootstrap: instance $INSTANCE_ID"

# Packages: Docker and the EFS mount helper (TLS), from the AL2023 repositories.
if ! rpm -q docker amazon-efs-utils >/dev/null 2>&1; then
  dnf -y install docker amazon-efs-utils
fi

# EFS through fstab (TLS; _netdev so that boot never hangs on it), retried, then checked.
mkdir -p "$MNT"
if ! grep -qsF "$EFS_ID:/ /mnt/efs/psdata " "$R/etc/fstab"; then
  echo "$EFS_ID:/ /mnt/efs/psdata efs _netdev,tls,noresvport 0 0" >> "$R/etc/fstab"
fi
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  if mountpoint -q "$MNT"; then break; fi
  mount "$MNT" || echo "presta-bootstrap: EFS mount attempt $attempt failed; retrying"
  mountpoint -q "$MNT" || sleep "${PRESTA_MOUNT_RETRY_SECONDS:-6}"
done
mountpoint -q "$MNT" || fail "EFS $EFS_ID is not mounted on /mnt/efs/psdata: refusing to start PrestaShop on an empty directory (its installer would drop the live database's tables)"
systemctl enable --now docker.service

# The stack's values, for presta-ctl and the unit (no secret among them).
install -d -m 0755 "$R/etc/presta" "$R/etc/presta/php" "$R/etc/presta/apache" "$R/usr/local/sbin" "$R/usr/local/share/presta"
{
  for name in $PRESTA_VALUES INSTANCE_ID; do
    printf '%s=%q\n' "$name" "${!name}"
  done
} > "$R/etc/presta/presta.conf.tmp"
chmod 0644 "$R/etc/presta/presta.conf.tmp"
mv "$R/etc/presta/presta.conf.tmp" "$R/etc/presta/presta.conf"

# The operator's commands (presta-ctl --help) and the PrestaShop 8 thumbnail script.
cat > "$R/usr/local/sbin/presta-ctl" <<'PRESTA_FILE_EOF'
# @presta-file:presta-ctl.sh@
PRESTA_FILE_EOF
chmod 0755 "$R/usr/local/sbin/presta-ctl"
cat > "$R/usr/local/share/presta/rebuild_thumbs.php" <<'PRESTA_FILE_EOF'
# @presta-file:rebuild_thumbs.php@
PRESTA_FILE_EOF

# PHP for a docroot on EFS: OPcache checks a file at most once a minute instead of stat-ing
# every include over NFS on every request.
cat > "$R/etc/presta/php/zz-presta.ini" <<'EOF'
opcache.enable=1
opcache.validate_timestamps=1
opcache.revalidate_freq=60
opcache.max_accelerated_files=65407
opcache.memory_consumption=256
opcache.interned_strings_buffer=16
realpath_cache_size=4096K
realpath_cache_ttl=600
EOF
# Apache behind the ALB: HTTPS as the client saw it (the ALB terminates TLS; only the ALB's
# security group reaches the instances), no mmap/sendfile on NFS.
cat > "$R/etc/presta/apache/presta-proxy.conf" <<'EOF'
SetEnvIf X-Forwarded-Proto "^https$" HTTPS=on
EnableMMAP Off
EnableSendfile Off
EOF

# PrestaShop as a systemd unit: after Docker and the EFS mount, never without the mount;
# presta-ctl decides before each start whether this instance installs (exactly one does).
cat > "$R/etc/systemd/system/prestashop.service" <<EOF
[Unit]
Description=PrestaShop ($IMAGE) for stack $STACK
After=docker.service network-online.target
Requires=docker.service
Wants=network-online.target
RequiresMountsFor=/mnt/efs/psdata

[Service]
Restart=always
RestartSec=10
TimeoutStartSec=3600
ExecStartPre=/usr/bin/mountpoint -q $MNT
ExecStartPre=$R/usr/local/sbin/presta-ctl prestart
ExecStartPre=-/usr/bin/docker rm -f prestashop
ExecStartPre=/usr/bin/docker pull $IMAGE
ExecStart=/usr/bin/docker run --name prestashop --env-file $R/run/prestashop/env -p 80:80 -v $MNT:/var/www/html -v $R/etc/presta/php/zz-presta.ini:/usr/local/etc/php/conf.d/zz-presta.ini:ro -v $R/etc/presta/apache/presta-proxy.conf:/etc/apache2/conf-enabled/presta-proxy.conf:ro $IMAGE
ExecStartPost=$R/usr/local/sbin/presta-ctl poststart
ExecStop=/usr/bin/docker stop prestashop

[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload
systemctl enable prestashop.service
if systemctl is-active --quiet prestashop.service; then
  echo "presta-bootstrap: prestashop.service already running: nothing to start"
else
  systemctl start prestashop.service
fi
echo "presta-bootstrap: done $(date -Is)"
