#!/bin/bash
# presta-reconciler instance bootstrap (Amazon Linux 2023).
#
# Rendered by the reconciler: it replaces the values marker below with the stack's values as
# quoted shell assignments. No secret is ever written here (user data is readable through
# IMDS by any process): passwords are read from SSM at each service start into a root-only
# file on tmpfs.
#
# Safe to run again: every step checks before it acts.
set -euo pipefail

# @presta-values@

LOG=/var/log/presta-bootstrap.log
exec > >(tee -a "$LOG" | logger -t presta-bootstrap -s 2>/dev/console) 2>&1
fail() { echo "presta-bootstrap: FATAL: $*" >&2; exit 1; }
echo "presta-bootstrap: start $(date -Is) stack=${STACK}"

MNT=/mnt/efs/psdata
ENV_DIR=/run/prestashop

# IMDSv2 only (the launch template requires tokens).
imds() {
  local token
  token=$(curl -sS -X PUT "http://169.254.169.254/latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
  curl -sS -H "X-aws-ec2-metadata-token: ${token}" "http://169.254.169.254/latest/meta-data/$1"
}
INSTANCE_ID=$(imds instance-id)
echo "presta-bootstrap: instance ${INSTANCE_ID}"

# Packages.
if ! rpm -q docker amazon-efs-utils >/dev/null 2>&1; then
  dnf -y install docker amazon-efs-utils
fi
systemctl enable --now docker

# EFS through fstab (TLS), retried; nothing starts without the real mount.
mkdir -p "$MNT"
FSTAB_LINE="${EFS_ID}:/ ${MNT} efs _netdev,tls,noresvport 0 0"
if ! grep -qF "${EFS_ID}:/ ${MNT} " /etc/fstab; then
  echo "$FSTAB_LINE" >> /etc/fstab
fi
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  if mountpoint -q "$MNT"; then break; fi
  mount "$MNT" || echo "presta-bootstrap: EFS mount attempt ${attempt} failed, retrying"
  sleep 6
done
mountpoint -q "$MNT" || fail "EFS ${EFS_ID} is not mounted on ${MNT}: refusing to start PrestaShop on an empty directory (it would reinstall over the live database)"

# The environment file is written at each start, from SSM, into tmpfs, mode 600.
install -d -m 0700 /usr/local/libexec/presta /etc/presta
printf '%s\n' "${EXTRA_ENV}" | sed '/^$/d' > /etc/presta/extra.env
chmod 600 /etc/presta/extra.env
cat > /usr/local/libexec/presta/write-env <<EOF
#!/bin/bash
set -euo pipefail
umask 077
mkdir -p ${ENV_DIR}
mountpoint -q ${MNT} || { echo "EFS is not mounted on ${MNT}" >&2; exit 1; }
db_password=\$(aws ssm get-parameter --region ${REGION} --with-decryption --name '${DB_PASSWORD_PARAM}' --query Parameter.Value --output text)
admin_password=\$(aws ssm get-parameter --region ${REGION} --with-decryption --name '${ADMIN_PASSWORD_PARAM}' --query Parameter.Value --output text)
install_auto=0
if [ ! -f ${MNT}/app/config/parameters.php ] && mkdir ${MNT}/.presta-install.lock 2>/dev/null; then
  echo "${INSTANCE_ID} \$(date -Is)" > ${MNT}/.presta-install.lock/owner
  install_auto=1
fi
{
  echo "DB_SERVER=${DB_HOST}"
  echo "DB_PORT=${DB_PORT}"
  echo "DB_NAME=${DB_NAME}"
  echo "DB_USER=${DB_USER}"
  echo "DB_PASSWD=\${db_password}"
  echo "DB_PREFIX=ps_"
  echo "ADMIN_MAIL=${ADMIN_EMAIL}"
  echo "ADMIN_PASSWD=\${admin_password}"
  echo "PS_DOMAIN=${PS_DOMAIN}"
  echo "PS_ENABLE_SSL=${PS_ENABLE_SSL}"
  echo "PS_INSTALL_AUTO=\${install_auto}"
  echo "PS_ERASE_DB=0"
  echo "PS_INSTALL_DB=0"
  echo "PS_HANDLE_DYNAMIC_DOMAIN=0"
  echo "PS_FOLDER_ADMIN=${ADMIN_FOLDER}"
  echo "PS_LANGUAGE=${LANGUAGE}"
  echo "PS_COUNTRY=${COUNTRY}"
  echo "PS_DEV_MODE=0"
  cat /etc/presta/extra.env
} > ${ENV_DIR}/env
chmod 600 ${ENV_DIR}/env
EOF
chmod 0700 /usr/local/libexec/presta/write-env

# Behind the load balancer: no dynamic-domain script (it rewrites the shop's domain to the
# health checker's address and lets anyone repoint the shop), a static health file.
rm -f "${MNT}/docker_updt_ps_domains.php"
if [ -d "${MNT}" ]; then
  printf 'ok\n' > "${MNT}${HEALTH_PATH}.tmp" && mv "${MNT}${HEALTH_PATH}.tmp" "${MNT}${HEALTH_PATH}"
fi

# PrestaShop as a systemd unit: after Docker and the EFS mount, never without the mount.
cat > /etc/systemd/system/prestashop.service <<EOF
[Unit]
Description=PrestaShop (${IMAGE})
After=docker.service network-online.target
Requires=docker.service
Wants=network-online.target
RequiresMountsFor=${MNT}

[Service]
Restart=always
RestartSec=10
TimeoutStartSec=900
ExecStartPre=/usr/bin/mountpoint -q ${MNT}
ExecStartPre=/usr/local/libexec/presta/write-env
ExecStartPre=-/usr/bin/docker rm -f prestashop
ExecStartPre=/usr/bin/docker pull ${IMAGE}
ExecStart=/usr/bin/docker run --name prestashop --env-file ${ENV_DIR}/env -p 80:80 -v ${MNT}:/var/www/html ${IMAGE}
ExecStop=/usr/bin/docker stop prestashop

[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload
systemctl enable prestashop.service
systemctl restart prestashop.service
echo "presta-bootstrap: done $(date -Is)"
